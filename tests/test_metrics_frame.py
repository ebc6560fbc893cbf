"""The long metrics frame is built column-wise; it must be the very frame the record-wise
construction (``typed_frame`` = ``DataFrame.from_records`` then retyping) gives, dtypes and
column order included, on logs of every shape a task or a hostile directory leaves."""

from __future__ import annotations

import json
from itertools import chain
from pathlib import Path

import mlxpy
import numpy as np
import pandas as pd
import pytest
from mlxpy.reading.reader import records_frame, typed_frame
from mlxpy.rundir import codec, metrics
from mlxpy.rundir.metrics import latest_per_step, read_records

#: logs, each a list of records, written as JSON lines
LOGS = {
    "uniform": [
        {"step": s, "loss": 1.0 / (s + 1), "acc": s / 4, "_time": 1.5 + s} for s in range(4)
    ],
    "missing keys, None, NaN": [
        {"step": 0, "loss": 1.0},
        {"step": 1, "acc": 0.5, "note": "warmup"},
        {"step": 2, "loss": None, "acc": float("nan"), "flag": True},
        {"loss": 0.25, "epoch": 1},
    ],
    "ints with gaps, bools with gaps": [
        {"step": 0, "n": 3, "ok": True},
        {"step": 1, "ok": None},
        {"step": 2, "n": 5, "ok": False, "lr": 1},
        {"step": 3, "n": None, "lr": 0.5},
    ],
    "strings and mixed kinds": [
        {"step": 0, "name": "a", "mix": 1, "nested": [1, 2]},
        {"step": 1, "name": None, "mix": "x", "nested": {"k": 1}},
        {"step": 2, "name": "c", "mix": True},
    ],
    "big ints": [
        {"step": 0, "u": 2**63, "o": 2**64, "s": -1},
        {"step": 1, "u": 1, "o": 1, "s": 2**63},
    ],
    "resumed attempts": [
        {"step": 0, "loss": 1.0},
        {"step": 1, "loss": 0.9},
        {"step": 2, "loss": 0.8},
        {"step": 1, "loss": 0.7, "acc": 0.1},  # resumed from the checkpoint at step 1
        {"step": 1, "acc": 0.2},  # same attempt, same step: merged
        {"step": 2, "loss": 0.6},
    ],
    "new keys appear late": [{"step": 0, "b": 1.0}, {"step": 1, "a": 2.0, "b": 3.0}],
    "empty": [],
}


def write_log(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # the stdlib's encoder: it writes what a hostile file may hold (ints past 64 bits, NaN)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def assert_same(new: pd.DataFrame, old: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert list(new.columns) == list(old.columns)
    assert [str(t) for t in new.dtypes] == [str(t) for t in old.dtypes]


@pytest.fixture
def logs(tmp_path):
    paths = {}
    for i, (name, records) in enumerate(LOGS.items()):
        paths[name] = tmp_path / str(i) / "metrics" / "train.json"
        write_log(paths[name], records)
    return paths


@pytest.mark.parametrize("name", list(LOGS))
@pytest.mark.parametrize("latest", [False, True])
def test_one_log_gives_the_record_wise_frame(logs, name, latest):
    rows = read_records(logs[name])
    if latest:
        rows = latest_per_step(rows)
    assert_same(records_frame([rows]), typed_frame(rows))


def test_many_logs_of_different_shapes_give_the_record_wise_frame(logs):
    for order in (list(LOGS), list(reversed(LOGS))):
        each = [latest_per_step(read_records(logs[name])) for name in order]
        assert_same(records_frame(each), typed_frame(list(chain.from_iterable(each))))
    each = [read_records(logs[name]) for name in LOGS]
    new = records_frame(each, skip=["_time", "loss"])
    old = typed_frame(list(chain.from_iterable(each))).drop(columns=["_time", "loss"])
    assert_same(new, old)
    # the dtypes the rules give, spelled out on one case (not only new == old)
    frame = records_frame([read_records(logs["ints with gaps, bools with gaps"])])
    assert str(frame["n"].dtype) == "Int64" and str(frame["ok"].dtype) == "boolean"
    assert frame["lr"].dtype == np.float64 and frame["step"].dtype == np.int64


def test_whole_file_fast_path_reads_what_the_line_reader_reads(logs, tmp_path, monkeypatch):
    torn = tmp_path / "torn.json"
    torn.write_bytes(b'{"step": 0, "a": 1}\n\n[1]\n{"step": 1, "a": 2}\n{"step": 2, "a"')
    paths = [*logs.values(), torn]
    fast = [read_records(p) for p in paths]
    monkeypatch.setattr(metrics, "WHOLE_FILE_BYTES", 0)  # every file read line by line
    slow = [read_records(p) for p in paths]
    monkeypatch.undo()
    assert [len(r) for r in fast] == [len(LOGS[n]) for n in LOGS] + [2]
    assert repr(fast) == repr(slow)  # repr: NaN equals NaN


TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    c = ctx.config
    for step in range(5):
        extra = {"phase": "warm"} if step < 2 else {"best": step == 4, "n": step}
        ctx.logger.log_metrics({"loss": c.lr * (10 - step) + c.seed, **extra}, step=step)
    ctx.logger.log_metrics({"final": 1.0})

if __name__ == "__main__":
    my_task()
"""


def test_reader_metrics_and_aggregate_match_the_record_wise_construction(tmp_path):
    from conftest import Project

    project = Project(tmp_path, tmp_path)
    project.write_main(TASK)
    project.write_config("seed: 0\nlr: 0.1\n")
    result = project.run("lr=0.1,0.01", "seed=1,2")
    assert result.returncode == 0, result.stderr
    runs = mlxpy.Reader(project.logs).filter("info.status == 'COMPLETE'")
    assert len(runs) == 4
    # a resumed attempt appended to one run's log: steps 3, 4 logged again
    first = Path(runs["log_dir"].iloc[0]) / "metrics" / "train.json"
    with first.open("ab") as fh:
        fh.write(codec.encode_record({"step": 3, "loss": -1.0, "n": 30}))
        fh.write(codec.encode_record({"step": 4, "loss": -2.0, "best": None}))
    for attempts in ("latest", "all"):
        long = runs.mlxpy.metrics("train", attempts=attempts)
        parts, owners = [], []
        for log_id, log_dir in zip(runs.index, runs["log_dir"], strict=True):
            rows = read_records(Path(log_dir) / "metrics" / "train.json")
            rows = latest_per_step(rows) if attempts == "latest" else rows
            parts.extend(rows)
            owners.extend([log_id] * len(rows))
        old = typed_frame(parts)
        old.insert(0, "log_id", np.asarray(owners, dtype=np.int64))
        for column in runs.mlxpy.varying_config():
            old[column] = old["log_id"].map(runs[column])
        assert_same(long, old)
    assert (long["loss"] == -2.0).sum() == 1  # both attempts kept with attempts="all"
    agg = runs.mlxpy.aggregate("train", by=["config.lr"], over="config.seed")
    long = runs.mlxpy.metrics("train", ["config.lr", "config.seed"])
    names = ["loss", "best", "n", "final"]  # the numeric metrics, in the order first logged
    assert [str(long[n].dtype) for n in names] == ["float64", "boolean", "Int64", "float64"]
    old = long.groupby(["config.lr", "step"], dropna=False)[names].agg(["mean", "std", "count"])
    assert_same(agg, old)
    assert agg.loc[(0.01, 0), ("loss", "count")] == 2
