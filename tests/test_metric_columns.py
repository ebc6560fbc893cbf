"""The compact copies of finished metric logs (metrics/.columns/<log>.bin): the Reader's
histories read from them are exactly the histories parsed from the logs, and a copy that is
stale, damaged, planted or linked is never taken."""

from __future__ import annotations

import json
import os
import shutil

import mlxpy
import pandas as pd
import pytest
from mlxpy.reading import accessor
from mlxpy.rundir.columnar import copy_path, encode_copy, read_copy

TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    c = ctx.config
    for step in range(6):
        ctx.logger.log_metrics({"loss": c.lr * step + c.seed, "n": step * 2, "ok": step > 2},
                               step=step)
    if c.mode == "odd":  # a string value: no copy, the log is parsed
        ctx.logger.log_metrics({"loss": 0.5, "n": 1, "ok": True, "s": "x"}, step=6)
    if c.mode == "again":  # a step logged twice: no copy either
        ctx.logger.log_metrics({"loss": 0.25, "n": 1, "ok": True}, step=5)
    ctx.logger.log_metrics({"score": float(c.seed)}, log_name="test")

if __name__ == "__main__":
    my_task()
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from conftest import Project

    root = tmp_path_factory.mktemp("columns")
    project = Project(root, root)
    project.write_main(TASK)
    project.write_config("seed: 0\nlr: 0.1\nmode: plain\n")
    result = project.run("lr=0.1,0.01", "seed=1,2")
    assert result.returncode == 0, result.stderr
    return project


def _parsed(monkeypatch, runs, *args, **kw):
    with monkeypatch.context() as m:
        m.setattr(accessor, "read_copy", lambda path, root: None)
        return runs.mlxpy.metrics(*args, **kw), runs.mlxpy.aggregate(
            args[0] if args else "train", by=["config.lr"], over="config.seed"
        )


def _both(monkeypatch, logs, log_name="train"):
    runs = mlxpy.Reader(logs).filter()
    fast = (
        runs.mlxpy.metrics(log_name),
        runs.mlxpy.aggregate(log_name, by=["config.lr"], over="config.seed"),
    )
    slow = _parsed(monkeypatch, runs, log_name)
    for a, b in zip(fast, slow, strict=True):
        pd.testing.assert_frame_equal(a, b)
    return fast[0]


def test_finished_logs_have_copies_and_give_the_parsed_frames(store, tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    shutil.copytree(store.logs, logs)
    for run in sorted(p for p in logs.iterdir() if p.name.isdigit()):
        assert copy_path(run / "metrics" / "train.json").is_file()
    calls = []
    original = accessor.read_copy
    monkeypatch.setattr(accessor, "read_copy", lambda p, r: calls.append(p) or original(p, r))
    frame = _both(monkeypatch, logs)
    assert len(calls) == 8  # the fast path was taken, once per run and load
    assert list(frame.columns[:5]) == ["log_id", "step", "loss", "n", "ok"]
    assert [str(t) for t in frame.dtypes[1:5]] == ["int64", "float64", "int64", "bool"]
    assert len(frame) == 24 and frame["ok"].sum() == 12
    _both(monkeypatch, logs, "test")


@pytest.mark.parametrize("mode", ["odd", "again"])
def test_logs_that_are_not_alike_have_no_copy(store, tmp_path, monkeypatch, mode):
    logs = tmp_path / "logs"
    shutil.copytree(store.logs, logs)
    from conftest import Project

    (tmp_path / "p").mkdir()
    project = Project(tmp_path / "p", tmp_path / "p")
    project.write_main(TASK)
    project.write_config(f"seed: 3\nlr: 0.1\nmode: {mode}\n")
    assert project.run().returncode == 0
    (run,) = [p for p in project.logs.iterdir() if p.name.isdigit()]
    assert not copy_path(run / "metrics" / "train.json").exists()
    shutil.copytree(run, logs / "9")
    frame = _both(monkeypatch, logs)  # one run without a copy: all parsed, the same frame
    assert 9 in set(frame["log_id"])


def _damage(path, how):
    blob = path.read_bytes()
    header, _, body = blob.partition(b"\n")
    doc = json.loads(header)
    if how == "truncated":
        path.write_bytes(blob[:-3])
    elif how == "more rows":
        doc["rows"] += 1
        path.write_bytes(json.dumps(doc).encode() + b"\n" + body)
    elif how == "object dtype":
        doc["keys"][0][1] = "O"
        path.write_bytes(json.dumps(doc).encode() + b"\n" + body)
    elif how == "no header":
        path.write_bytes(b"x" * 70000)
    elif how == "stale":
        with open(path.parent.parent / "train.json", "a") as fh:  # the log grew since
            fh.write('{"step": 99, "loss": -5.0, "n": 0, "ok": false}\n')
    elif how == "linked":
        outside = path.parent.parent.parent.parent / "outside.bin"
        shutil.move(path, outside)
        os.symlink(outside, path)
    elif how == "linked dir":
        folder = path.parent
        outside = folder.parent.parent.parent / "outside-columns"
        shutil.move(folder, outside)
        os.symlink(outside, folder, target_is_directory=True)
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif how == "sparse":  # a true header, then a gigabyte of holes: never read whole
        with open(path, "r+b") as fh:
            fh.truncate(1 << 30)


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "more rows",
        "object dtype",
        "no header",
        "stale",
        "linked",
        "linked dir",
        "fifo",
        "sparse",
    ],
)
def test_a_damaged_or_planted_copy_is_not_taken(store, tmp_path, monkeypatch, how):
    logs = tmp_path / "logs"
    shutil.copytree(store.logs, logs)
    log = logs / "2" / "metrics" / "train.json"
    _damage(copy_path(log), how)
    assert read_copy(log, logs / "2") is None
    frame = _both(monkeypatch, logs)
    if how == "stale":
        assert frame[frame["log_id"] == 2]["loss"].iloc[-1] == -5.0  # the log, not the copy


def test_a_metrics_file_in_place_of_the_dir_is_told_as_when_parsed(store, tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(store.logs, logs)
    shutil.rmtree(logs / "3" / "metrics")
    (logs / "3" / "metrics").write_text("not a dir")
    runs = mlxpy.Reader(logs).filter()
    with pytest.warns(UserWarning, match="run 3: train metrics skipped"):
        frame = runs.mlxpy.metrics("train")
    assert 3 not in set(frame["log_id"]) and len(set(frame["log_id"])) == 3


def test_encode_refuses_what_it_cannot_type_exactly():
    assert encode_copy([], 0) is None
    assert encode_copy([{"a": 1}, {"b": 1}], 10) is None  # keys differ
    assert encode_copy([{"a": 1}, {"a": None}], 10) is None
    assert encode_copy([{"a": True}, {"a": 1}], 10) is None  # bool and int
    assert encode_copy([{"a": 2**63}], 10) is None  # beyond int64
    assert encode_copy([{"step": 1}, {"step": 1}], 10) is None
    assert encode_copy([{"step": 2}, {"step": 1}], 10) is None
    assert encode_copy([{"a": 1}, {"a": 1.5}], 10) is not None  # floats, ints among them
