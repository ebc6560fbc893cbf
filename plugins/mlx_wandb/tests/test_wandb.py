"""WandbLogger with the real wandb package in offline mode (no network)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

from mlxpy.rundir.layout import RunDir
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


# -- a distributed job: one W&B run ---------------------------------------------------------

RANKS_MAIN = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    rank = ctx.info.rank
    for step in range(ctx.config.start, ctx.config.start + 3):
        ctx.logger.log_metrics({"loss": 1.0 / (step + 1) + 100 * rank}, step=step)
        ctx.logger.log_metrics({"x": 10 * rank + step}, log_name="per", step=step, all_ranks=True)
    if rank == ctx.config.get("fail_rank", -1):
        raise RuntimeError(f"rank {rank} fails")

if __name__ == "__main__":
    task()
"""


def make_ranks(tmp_path: Path, **settings) -> ProjectDir:
    project = ProjectDir(tmp_path / "p", RANKS_MAIN)
    project.env = dict(OFFLINE)
    project.write_config({"seed": 0, "start": 0})
    logger = {"name": "WandbLogger", "mode": "offline", "project": "demo", **settings}
    project.write_config({"logger": logger}, "mlxpy.yaml")
    return project


def run_ranks(project: ProjectDir, *args: str) -> list:
    results = project.run_ranks(2, *args)
    for result in results:
        assert result.returncode == 0, result.stderr
    return results


def test_a_distributed_job_is_one_wandb_run_from_rank_zero(tmp_path):
    project = make_ranks(tmp_path)
    run_ranks(project)
    (run_dir,) = project.run_dirs()
    (path,) = offline_files(run_dir)  # one W&B run, rank 0's
    assert not list((run_dir / "ranks").glob("*/wandb"))  # the other rank opened none
    info = project.info(run_dir)
    assert info["world_size"] == 2 and info["status"] == "COMPLETE"
    assert path.name == f"run-{info['wandb']['run_id']}.wandb"
    rows = history(read_offline_records(path))
    assert [(r["train/step"], r["train/loss"]) for r in rows if "train/loss" in r] == [
        (0, 1.0),
        (1, 0.5),
        (2, 1.0 / 3),
    ]  # one record per step, rank 0's alone
    assert [r["per/x"] for r in rows if "per/x" in r] == [0, 1, 2]
    assert not any(key.startswith("rank1/") for r in rows for key in r)
    # the local record keeps rank 1's own log, as with DefaultLogger
    assert RunDir(run_dir).rank(1).metrics_file("per").read_text().count("\n") == 3


def test_a_requeued_distributed_job_resumes_the_same_wandb_run(tmp_path):
    project = make_ranks(tmp_path)
    run_ranks(project)
    run_ranks(project, "+mlxpy.logger.forced_log_id=1", "start=3")  # a new job, same run dir
    (run_dir,) = project.run_dirs()
    files = offline_files(run_dir)
    assert len(files) == 2 and len({f.name for f in files}) == 1  # one W&B run id
    resumed = history(read_offline_records(files[-1]))
    assert [r["train/step"] for r in resumed if "train/loss" in r] == [3, 4, 5]


def test_shared_mode_offline_falls_back_to_rank_zero_with_a_warning(tmp_path):
    project = make_ranks(tmp_path, shared=True)
    results = run_ranks(project)
    (run_dir,) = project.run_dirs()
    assert len(offline_files(run_dir)) == 1
    assert not list((run_dir / "ranks").glob("*/wandb"))
    assert "W&B's shared mode needs W&B online, and mode is offline" in results[0].stderr
    assert "shared mode" not in results[1].stderr  # said once, by rank 0
    assert project.info(run_dir)["wandb"]["mode"] == "offline"


def test_the_installed_wandb_takes_the_shared_mode_settings():
    import wandb
    from mlx_wandb.logger import shared_settings

    primary, worker = shared_settings(wandb, 0), shared_settings(wandb, 1)
    assert (primary.mode, primary.x_primary, primary.x_update_finish_state) == (
        "shared",
        True,
        True,
    )
    assert (worker.mode, worker.x_primary, worker.x_update_finish_state) == ("shared", False, False)
    assert (primary.x_label, worker.x_label) == ("rank0", "rank1")


# W&B's shared mode needs the W&B server, which cannot run here: this stand-in for the wandb
# package records what each rank asks of it (its init arguments, in order, and what it logs).
FAKE_WANDB = """
import json, os, time

_LOG = os.environ["FAKE_WANDB_LOG"]


def _record(**entry):
    with open(_LOG, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "t": time.time(), **entry}) + "\\n")


class Settings:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class _Run:
    url = "https://wandb.invalid/run"

    def __init__(self):
        self.summary = {}

    def define_metric(self, *args, **kwargs):
        pass

    def log(self, payload):
        _record(call="log", payload=payload)

    def finish(self, exit_code=0):
        _record(call="finish", exit_code=exit_code, summary=self.summary)


def init(**kwargs):
    settings = kwargs.pop("settings", None)
    kwargs.pop("config", None)
    _record(call="init", kwargs=kwargs, settings=settings.kwargs if settings else None)
    return _Run()
"""


def test_shared_mode_online_every_rank_writes_to_the_one_run(tmp_path):
    fake = tmp_path / "fake"
    (fake / "wandb").mkdir(parents=True)
    (fake / "wandb" / "__init__.py").write_text(FAKE_WANDB)
    log = tmp_path / "calls.jsonl"
    project = make_ranks(tmp_path, shared=True, mode="online")
    project.env = {
        "FAKE_WANDB_LOG": str(log),
        "PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]),
    }
    results = run_ranks(project)
    (run_dir,) = project.run_dirs()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    by_rank = {result_pid(run_dir, k): k for k in (0, 1)}
    inits = {by_rank[c["pid"]]: c for c in calls if c["call"] == "init"}
    run_id = project.info(run_dir)["wandb"]["run_id"]
    assert (RunDir(run_dir).metadata / "wandb_run_id.txt").read_text().split()[0] == run_id
    assert {k: c["kwargs"]["id"] for k, c in inits.items()} == {0: run_id, 1: run_id}
    assert {k: c["kwargs"]["mode"] for k, c in inits.items()} == {0: "shared", 1: "shared"}
    assert inits[0]["kwargs"]["resume"] == "allow" and "resume" not in inits[1]["kwargs"]
    assert inits[0]["kwargs"]["name"] == "1" and "name" not in inits[1]["kwargs"]  # rank 0's
    assert inits[1]["settings"] == {
        "mode": "shared",
        "x_primary": False,
        "x_label": "rank1",
        "x_update_finish_state": False,
    }
    assert inits[0]["settings"]["x_primary"] is True
    assert inits[0]["t"] < inits[1]["t"]  # the primary creates the run first
    assert inits[1]["kwargs"]["dir"] == str(RunDir(run_dir).rank(1).root)
    logged = {
        k: [c["payload"] for c in calls if c["call"] == "log" and by_rank[c["pid"]] == k]
        for k in (0, 1)
    }
    assert [p["rank1/per/x"] for p in logged[1]] == [10, 11, 12]  # only what it keeps itself
    assert all(set(p) <= {"rank1/per/x", "rank1/per/step"} for p in logged[1])
    assert [p["train/loss"] for p in logged[0] if "train/loss" in p] == [1.0, 0.5, 1.0 / 3]
    finishes = {by_rank[c["pid"]]: c for c in calls if c["call"] == "finish"}
    assert "mlxpy_status" in finishes[0]["summary"] and not finishes[1]["summary"]
    assert "did not record its W&B run" not in results[1].stderr  # it waited, then joined


def result_pid(run_dir: Path, rank: int) -> int:
    """The pid of rank ``rank``'s process, from its status file."""
    return json.loads(RunDir(run_dir).rank(rank).status.read_text())["pid"]


def summary_of(records: list) -> dict:
    out = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                out[item.key] = json.loads(item.value_json)
    return out


def test_a_failing_rank_fails_the_one_wandb_run(tmp_path):
    """Rank 1 raises, rank 0 completes its task: the W&B run (rank 0's) ends with the run's
    status, FAILED, not rank 0's own."""
    project = make_ranks(tmp_path)
    results = project.run_ranks(2, "+fail_rank=1")
    assert [r.returncode for r in results] == [0, 1], results[1].stderr
    (run_dir,) = project.run_dirs()
    assert project.info(run_dir)["status"] == "FAILED"
    (path,) = offline_files(run_dir)
    assert summary_of(read_offline_records(path))["mlxpy_status"] == "FAILED"
