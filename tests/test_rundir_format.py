"""The run directory as a format: one owner for its names, a format version and a uid in
each run, and readers that refuse what they cannot read."""

from __future__ import annotations

import ast
import io
import json
import tokenize
import uuid
from pathlib import Path

import mlxpy
import pytest
import yaml
from mlxpy.errors import MlxpyWarning
from mlxpy.rundir import layout
from mlxpy.rundir.status import RunStatus

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlxcore" / "mlxpy"

#: string constants that name run-dir files or statuses, besides generic file suffixes
OWNED = {
    value
    for key, value in vars(layout).items()
    if key.isupper() and isinstance(value, str) and not key.endswith("SUFFIX")
} | {status.value for status in RunStatus}

#: (module, literal): the same words with another meaning, each said why
ALLOWED = {
    # the project's config dir (configs/config.yaml, configs/mlxpy.yaml), not a run dir
    ("launching/configs.py", "config.yaml"),
    ("launching/options.py", "mlxpy.yaml"),
    ("testing/project.py", "config.yaml"),
    # a section heading of `mlxpy show`
    ("cli.py", "metrics"),
    # names exported in __all__ (the constants hold RunStatus members)
    ("testing/__init__.py", "COMPLETE"),
    ("testing/__init__.py", "FAILED"),
    # a scheduler job's phase (JobPhase), not a run status
    ("scheduling/base.py", "RUNNING"),
    # schedulers' own job states (SLURM's, LocalScheduler's), not run statuses
    *{("scheduler.py", s) for s in ("FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "REQUEUED")},
    *{("scheduling/local.py", s) for s in ("RUNNING", "CANCELLED", "FAILED")},
}


def _sources() -> list[Path]:
    core = [p for p in PACKAGE.rglob("*.py") if "rundir" not in p.relative_to(PACKAGE).parts]
    plugins = sorted(ROOT.glob("plugins/*/mlx_*/*.py"))
    return sorted(core) + plugins


def test_no_run_dir_literal_outside_the_owning_package():
    found = []
    for path in _sources():
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type != tokenize.STRING:
                continue
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):
                continue
            where = path.relative_to(PACKAGE).as_posix() if PACKAGE in path.parents else path.name
            if value in OWNED and (where, value) not in ALLOWED:
                found.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {value!r}")
    assert not found, "use mlxpy.rundir (layout, RunDir, RunStatus) instead:\n" + "\n".join(found)
    assert len(_sources()) > 30  # the scan saw the package and the plugins


def test_each_run_records_format_and_a_time_ordered_uid(project):
    assert project.run().returncode == 0
    assert project.run().returncode == 0
    first, second = project.run_dirs()
    uids = []
    for run_dir in (first, second):
        info = project.info(run_dir)
        record = json.loads((run_dir / layout.METADATA_DIR / layout.RUN_JSON).read_text())
        assert info["format"] == record["info"]["format"] == mlxpy.FORMAT_VERSION
        assert info["uid"] == record["info"]["uid"]
        uids.append(uuid.UUID(info["uid"]))
    assert all(u.version == 7 for u in uids)
    assert uids[0] != uids[1] and uids[0].int < uids[1].int  # claimed first, sorts first


def test_resume_keeps_the_uid(project):
    assert project.run().returncode == 0
    (run_dir,) = project.run_dirs()
    uid = project.info(run_dir)["uid"]
    assert project.run(f"+mlxpy.logger.forced_log_id={run_dir.name}").returncode == 0
    info = project.info(run_dir)
    assert info["restarts"] == 1 and info["uid"] == uid


def _set_format(run_dir: Path, version: int | None) -> None:
    info_path = run_dir / layout.METADATA_DIR / layout.INFO_FILE
    json_path = run_dir / layout.METADATA_DIR / layout.RUN_JSON
    info = yaml.safe_load(info_path.read_text())
    record = json.loads(json_path.read_text())
    for target in (info, record["info"]):
        if version is None:
            target.pop("format")
        else:
            target["format"] = version
    info_path.write_text(yaml.safe_dump(info))
    json_path.write_text(json.dumps(record))


def test_reader_refuses_a_newer_format_and_reads_a_legacy_one(project):
    for _ in range(3):
        assert project.run().returncode == 0
    first, second, third = project.run_dirs()
    _set_format(second, mlxpy.FORMAT_VERSION + 1)
    _set_format(third, None)  # written before runs had a format number
    with pytest.warns(MlxpyWarning, match="unreadable run"):
        reader = mlxpy.Reader(project.logs)
    runs = reader.filter()
    assert sorted(runs.index.tolist()) == [int(first.name), int(third.name)]
    reason = reader.skipped[second.name]
    assert "newer mlxpy" in reason and "upgrade mlxpy" in reason


def test_status_enum_is_what_the_files_hold(project):
    assert project.run().returncode == 0
    (run_dir,) = project.run_dirs()
    text = (run_dir / layout.METADATA_DIR / layout.INFO_FILE).read_text()
    assert "status: COMPLETE\n" in text  # a plain string, not a python/object tag
    assert project.info(run_dir)["status"] == RunStatus.COMPLETE
    assert str(RunStatus.COMPLETE) == "COMPLETE" and RunStatus.LOST.is_final
    assert not RunStatus.RUNNING.is_final


def test_codec_keeps_non_finite_floats_and_float_types():
    from mlxpy.rundir import codec

    record = {"a": float("nan"), "b": float("inf"), "c": 10.0, "d": 3, "e": None}
    back = codec.decode(codec.encode_record(record))
    assert back["a"] != back["a"] and back["b"] == float("inf")
    assert type(back["c"]) is float and type(back["d"]) is int and back["e"] is None
    nested = {"info": {"x": [1.0, float("-inf")]}}
    assert codec.decode(codec.encode(nested))["info"]["x"][1] == float("-inf")


def test_flatten_refuses_colliding_and_too_deep_keys():
    from mlxpy.rundir.flat import FlattenError, flatten

    assert flatten({"a": {"b": 1, "c": {}}, "d": 2}) == {"a.b": 1, "a.c": {}, "d": 2}
    with pytest.raises(FlattenError, match="'a.b'"):
        flatten({"a.b": 10, "a": {"b": 20}})
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["k"] = {}
        node = node["k"]
    node["leaf"] = 1
    with pytest.raises(FlattenError, match="deeper than"):
        flatten(deep)


def test_temp_names_are_ours_only():
    name = layout.temp_name("info.yaml", "0123456789ab")
    assert name == ".info.0123456789ab.tmp.yaml" and layout.is_temp_name(name)
    assert layout.is_temp_name(layout.temp_name("heartbeat", "abcdefabcdef"))
    for user_file in (".best.tmp", ".model.tmp.pt", ".x.0123456789.tmp", "a.0123456789ab.tmp"):
        assert not layout.is_temp_name(user_file), user_file


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_metrics_reader_skips_torn_and_overlong_lines_at_any_block_size(
    tmp_path, monkeypatch, chunk
):
    from mlxpy.rundir import metrics, safe

    monkeypatch.setattr(metrics, "_READ_CHUNK", chunk)
    monkeypatch.setattr(safe, "MAX_LINE_BYTES", 100)
    path = tmp_path / "train.json"
    lines = [json.dumps({"step": i, "loss": i / 2}) for i in range(20)]
    lines.insert(5, '{"step": "x' + "y" * 500 + '"}')  # overlong: skipped
    lines.insert(9, '{"torn": ')  # unreadable in the middle
    path.write_text("\n".join(lines) + '\n{"step": 99, "lo')  # torn last line
    bad: list[str] = []
    records = metrics.read_records(path, on_bad=bad.append)
    assert [r["step"] for r in records] == list(range(20))
    assert len(bad) == 3 and "torn last line" in bad[-1] and "longer than 100" in bad[0]


def test_metrics_reader_refuses_links_fifos_and_huge_files(tmp_path, monkeypatch):
    import os

    from mlxpy.rundir import metrics, safe

    outside = tmp_path / "secret.json"
    outside.write_text('{"a": 1}\n')
    (tmp_path / "link.json").symlink_to(outside)
    os.mkfifo(tmp_path / "fifo.json")
    for name in ("link.json", "fifo.json"):
        with pytest.raises(OSError):
            metrics.read_records(tmp_path / name)
    monkeypatch.setattr(safe, "MAX_METRICS_BYTES", 4)
    with pytest.raises(safe.UnsafePathError, match="more than the 4"):
        metrics.read_records(outside)


def _matches(value: object, declared: str) -> bool:
    """Does ``value`` have a type of the schema's ``declared`` ("float|null: ...")?"""
    kinds = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "list": lambda v: isinstance(v, list),
        "dict": lambda v: isinstance(v, dict),
    }
    spec = declared.split(":", 1)[0] if not declared.startswith("{") else "dict"
    return any(kinds[part.split("[", 1)[0].strip()](value) for part in spec.split("|"))


INFO_TASK = """
import sys
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    ctx.logger.log_checkpoint({"step": 1})
    if ctx.config.mode == "exit":
        sys.exit(3)
    if ctx.config.mode == "fail":
        raise ValueError("on purpose")

if __name__ == "__main__":
    task()
"""


def test_run_info_holds_only_schema_keys_of_the_schema_types(tmp_path):
    """Every key the core writes is in INFO_SCHEMA with the declared type: a completed, a
    failed, an exited and a resumed run (the schema is what docs/run-directory.md lists)."""
    from mlxpy.rundir.info import INFO_SCHEMA
    from mlxpy.testing import ProjectDir

    project = ProjectDir(tmp_path / "p", INFO_TASK)
    project.write_config({"seed": 0, "mode": "ok"})
    assert project.run().returncode == 0
    assert project.run("mode=fail").returncode == 1
    assert project.run("mode=exit").returncode == 3
    assert project.run("+mlxpy.logger.forced_log_id=1").returncode == 0
    infos = [project.info(run_dir) for run_dir in project.run_dirs()]
    assert [info["status"] for info in infos] == ["COMPLETE", "FAILED", "FAILED"]
    seen = set()
    for info in infos:
        for key, value in info.items():
            assert key in INFO_SCHEMA, f"{key!r} is written but not in INFO_SCHEMA"
            assert _matches(value, INFO_SCHEMA[key]), (key, value, INFO_SCHEMA[key])
            seen.add(key)
    assert {"error", "exit_code", "restarts", "history", "end_time"} <= seen
    documented = (ROOT / "docs" / "run-directory.md").read_text()
    missing = [key for key in INFO_SCHEMA if f"`{key}`" not in documented]
    assert not missing, f"INFO_SCHEMA keys not in docs/run-directory.md: {missing}"
