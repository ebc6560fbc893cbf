"""WandbLogger with the real wandb package in offline mode (no network)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from mlxpy.testing import LoggerSuite, ProjectDir

OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}


class TestWandbLoggerConformance(LoggerSuite):
    logger_name = "WandbLogger"
    logger_settings = {"mode": "offline", "project": "suite"}
    env = OFFLINE


def read_offline_records(path: Path) -> list:
    """The records of an offline ``.wandb`` file, decoded with wandb's own protobuf schema.
    The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each with
    a 7-byte header (crc32c, little-endian length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history(records: list) -> list[dict]:
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows


def config_of(records: list) -> dict:
    out = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        updates = (
            record.run.config.update
            if kind == "run"
            else record.config.update
            if kind == "config"
            else []
        )
        for item in updates:
            out[item.key] = json.loads(item.value_json)
    return out


MAIN = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    for step in range(ctx.config.start, ctx.config.start + 3):
        ctx.logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    ctx.logger.log_metrics({"acc": 0.9}, log_name="test", step=0)

if __name__ == "__main__":
    task()
"""


def make(tmp_path: Path) -> ProjectDir:
    project = ProjectDir(tmp_path / "p", MAIN)
    project.env = dict(OFFLINE)
    project.write_config({"seed": 0, "start": 0, "lr": 0.1})
    project.write_config(
        {"logger": {"name": "WandbLogger", "mode": "offline", "project": "demo", "tags": ["t1"]}},
        "mlxpy.yaml",
    )
    return project


def offline_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))


def test_offline_run_holds_config_and_metrics(tmp_path):
    project = make(tmp_path)
    result = project.run("lr=0.5")
    assert result.returncode == 0, result.stderr
    (run_dir,) = project.run_dirs()
    (path,) = offline_files(run_dir)
    records = read_offline_records(path)
    config = config_of(records)
    assert config["config"]["lr"] == 0.5
    assert config["info"]["log_id"] == 1
    rows = history(records)
    losses = [(r["train/step"], r["train/loss"]) for r in rows if "train/loss" in r]
    assert losses == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert any(r.get("test/acc") == 0.9 for r in rows)
    info = project.info(run_dir)
    assert info["wandb"]["mode"] == "offline" and info["status"] == "COMPLETE"
    assert path.name == f"run-{info['wandb']['run_id']}.wandb"
    # the local record is complete too: the Reader works on it
    from mlxpy.reading.reader import Reader

    assert Reader(project.logs).filter().iloc[0]["train.loss.last"] == 1.0 / 3


def test_resume_continues_the_same_wandb_run(tmp_path):
    project = make(tmp_path)
    assert project.run().returncode == 0
    again = project.run("+mlxpy.logger.forced_log_id=1", "start=3")
    assert again.returncode == 0, again.stderr
    (run_dir,) = project.run_dirs()
    files = offline_files(run_dir)
    assert len(files) == 2 and len({f.name for f in files}) == 1  # one W&B run id


def test_wandb_is_not_imported_unless_selected(tmp_path):
    project = ProjectDir(
        tmp_path / "p",
        """
        import sys
        import mlxpy

        @mlxpy.launch(config_path="./configs")
        def task(ctx):
            print("wandb imported:", "wandb" in sys.modules)

        if __name__ == "__main__":
            task()
    """,
    )
    project.write_config({"seed": 0})
    result = project.run()
    assert result.stdout.strip() == "wandb imported: False", result.stderr


BLOCK_WANDB = """
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "wandb" or name.startswith("wandb."):
            raise ModuleNotFoundError("No module named 'wandb'")
        return None

sys.meta_path.insert(0, _Block())
"""


def test_missing_wandb_is_an_error_only_when_selected(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BLOCK_WANDB)
    project = make(tmp_path)
    project.env["PYTHONPATH"] = str(shim)
    selected = project.run()
    assert selected.returncode == 2
    assert "Unknown logger 'WandbLogger'" in selected.stderr
    assert (
        "The plugin 'wandb' (mlxpy-wandb 0.2.0) is installed but failed to load: "
        "mlxpy_register_loggers() raised ModuleNotFoundError"
    ) in selected.stderr
    project.write_config({"logger": {"name": "DefaultLogger"}}, "mlxpy.yaml")
    other = project.run()
    assert other.returncode == 0, other.stderr
    check = subprocess.run(
        [sys.executable, "-c", "import wandb"], capture_output=True, env={"PYTHONPATH": str(shim)}
    )
    assert check.returncode != 0  # the shim really hides wandb
