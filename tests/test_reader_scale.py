"""The index at scale: finished runs are not looked at again unless the parent's listing or
the change journal says so; the kept frame, brought up to date, is the frame a rebuild gives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import mlxpy
import pandas as pd
import pytest
from mlxpy.reading import index as index_module
from mlxpy.rundir.changes import note_change

TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    c = ctx.config
    start = 4 if c.more else 0
    for step in range(start, start + 4):
        ctx.logger.log_metrics({"loss": c.lr * (10 - step), "acc": step / 8}, step=step)

if __name__ == "__main__":
    my_task()
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from conftest import Project

    root = tmp_path_factory.mktemp("scale")
    project = Project(root, root)
    project.write_main(TASK)
    project.write_config("seed: 0\nlr: 0.1\nmore: false\n")
    result = project.run("lr=0.1,0.01", "seed=1,2")
    assert result.returncode == 0, result.stderr
    return project


@pytest.fixture
def counted(monkeypatch):
    """The run dirs whose signature (a stat) or files (a read) the index looks at."""
    seen: dict[str, list[str]] = {"sig": [], "read": []}
    sig, read = index_module.signature_and_newest, index_module.read_run
    monkeypatch.setattr(
        index_module,
        "signature_and_newest",
        lambda d: seen["sig"].append(os.path.basename(d)) or sig(d),
    )
    monkeypatch.setattr(
        index_module,
        "read_run",
        lambda d, **kw: seen["read"].append(os.path.basename(d)) or read(d, **kw),
    )
    monkeypatch.setattr(index_module, "SETTLE_S", 0.0)  # the runs are settled at once
    return seen


def _same_as_rebuilt(reader: mlxpy.Reader, logs) -> None:
    rebuilt = mlxpy.Reader(logs, reload=True).filter()
    pd.testing.assert_frame_equal(reader.filter(), rebuilt)


def test_settled_runs_are_not_looked_at_again_until_resumed(tmp_path, store, counted):
    logs = tmp_path / "logs"
    shutil.copytree(store.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-*"))
    os.utime(logs, (1, 1))  # the parent's listing is old: sure of it
    reader = mlxpy.Reader(logs)
    assert len(reader) == 4 and sorted(counted["read"]) == ["1", "2", "3", "4"]
    counted["sig"].clear(), counted["read"].clear()
    warm = mlxpy.Reader(logs)
    assert counted == {"sig": [], "read": []}  # no run looked at
    pd.testing.assert_frame_equal(warm.filter(), reader.filter())
    # a resume (a real launch) journals the run: it alone is read again
    resumed = store.run(
        "+mlxpy.logger.forced_log_id=1",
        f"+mlxpy.logger.parent_log_dir={logs}",
        "lr=0.1",
        "seed=1",
        "more=true",
    )
    assert resumed.returncode == 0, resumed.stderr
    os.utime(logs, (1, 1))
    counted["sig"].clear(), counted["read"].clear()
    after = mlxpy.Reader(logs)
    assert counted["read"] == ["1"] and counted["sig"] == ["1"]
    run = after.filter("log_id == 1").iloc[0]
    assert run["train.step.max"] == 7 and run["train.rows"] == 8
    assert run["train.loss.argmin_step"] == 7 and run["train.loss.min"] == pytest.approx(0.3)
    _same_as_rebuilt(after, logs)


def test_new_deleted_and_journaled_runs_update_the_kept_frame(tmp_path, store, counted):
    logs = tmp_path / "logs"
    shutil.copytree(store.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-*"))
    mlxpy.Reader(logs)
    shutil.copytree(logs / "1", logs / "9")  # a new run
    shutil.rmtree(logs / "2")  # a deleted one
    record = json.loads((logs / "3" / "metadata" / "run.json").read_text())
    record["config"]["lr"] = "fast"  # a float column gets a string: it becomes object
    record["config"]["extra"] = 1  # an int key missing elsewhere: Int64
    (logs / "3" / "metadata" / "run.json").write_text(json.dumps(record))
    note_change(logs, 3)
    counted["read"].clear()
    reader = mlxpy.Reader(logs)
    assert sorted(counted["read"]) == ["3", "9"]
    assert list(reader.filter().index) == [1, 3, 4, 9]
    frame = reader.filter()
    assert frame["config.lr"].dtype == object and frame.loc[3, "config.lr"] == "fast"
    assert frame.loc[1, "config.lr"] == 0.1 and type(frame.loc[1, "config.lr"]) is float
    assert str(frame["config.extra"].dtype) == "Int64"
    _same_as_rebuilt(reader, logs)
    # and back: the string goes, the column is float again, as a rebuild has it
    record["config"]["lr"] = 0.5
    del record["config"]["extra"]
    (logs / "3" / "metadata" / "run.json").write_text(json.dumps(record))
    note_change(logs, 3)
    reader = mlxpy.Reader(logs)
    assert reader.filter()["config.lr"].dtype == "float64"
    assert "config.extra" not in reader.filter().columns
    _same_as_rebuilt(reader, logs)


def test_summary_columns_are_queryable(store):
    reader = mlxpy.Reader(store.logs)
    runs = reader.filter("train.loss.min < 0.1 & train.acc.argmax_step == 3")
    assert sorted(runs["config.lr"].unique()) == [0.01]
    assert reader.fields["train.loss.argmin_step"] == "int"
    assert reader.fields["train.loss.count"] == "int"


@pytest.mark.parametrize("journal", ["link", "garbage", "fifo", "truncated"])
def test_hostile_journals_are_hints_only(tmp_path, store, journal):
    logs = tmp_path / "logs"
    shutil.copytree(store.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-*"))
    path = logs / ".mlxpy-changes"
    path.write_text("1\n")
    mlxpy.Reader(logs)
    path.unlink()
    if journal == "link":
        os.symlink("/dev/zero", path)
    elif journal == "garbage":
        path.write_bytes(b"\x00\xff../../etc\n-1\n007\n" + b"9" * 5000 + b"\n2")
    elif journal == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("")
    reader = mlxpy.Reader(logs)  # never blocks, never reads outside
    assert len(reader) == 4
    _same_as_rebuilt(reader, logs)


def test_a_tag_on_a_settled_run_is_seen_without_a_reload(tmp_path, store, counted):
    """``mlxpy tag`` on a finished run the index no longer looks at: the change journal
    names it, so the next open reads that run (alone) and the tag is queryable."""
    logs = tmp_path / "logs"
    shutil.copytree(store.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-*"))
    os.utime(logs, (1, 1))
    assert len(mlxpy.Reader(logs).filter('tags contains "good"')) == 0
    result = subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", "tag", "-d", str(logs), "2", "+good"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    os.utime(logs, (1, 1))
    counted["sig"].clear(), counted["read"].clear()
    runs = mlxpy.Reader(logs).filter('tags contains "good"')
    assert list(runs.index) == [2] and counted["read"] == ["2"]
