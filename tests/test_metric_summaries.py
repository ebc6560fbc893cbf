"""Metric summaries kept by the writer (metrics/.summary/<log>.json) against the definition:
the summary parsed from the log itself, one row per step (resumed attempts included)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlxpy.reading.index import metric_summaries
from mlxpy.rundir.metrics import MetricsWriter, latest_per_step, read_records
from mlxpy.rundir.summary import read_summary, summarize, summary_path

VALUES = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
    st.none(),
    st.sampled_from(["a", "b"]),
)
RECORD = st.dictionaries(st.sampled_from(["loss", "acc", "lr", "note"]), VALUES, max_size=4)
STEPS = st.one_of(st.none(), st.integers(0, 8), st.floats(0, 8, allow_nan=False))
#: (step, record, action after it: 0 nothing, 1 flush, 2 close and reopen the writer)
EVENTS = st.lists(st.tuples(STEPS, RECORD, st.sampled_from([0, 0, 1, 2])), max_size=30)


def _writer(log: Path) -> MetricsWriter:
    return MetricsWriter(log, log.parent / ".keys" / log.name, log.stem, flush_every=1000)


def _write(log: Path, events: list) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    writer = _writer(log)
    for step, record, action in events:
        writer.write(dict(record), step=step)
        if action == 1:
            writer.flush()
        elif action == 2:
            writer.close()
            writer = _writer(log)
    writer.close()


def _parsed(log: Path) -> tuple[int, dict]:
    return summarize(latest_per_step(read_records(log)))


def _same(a: tuple[int, dict], b: tuple[int, dict]) -> bool:
    # NaN == NaN here: the JSON text of both sides is compared
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=EVENTS)
def test_the_writers_summary_is_the_parsed_one(tmp_path_factory, events):
    log = tmp_path_factory.mktemp("run") / "metrics" / "train.json"
    _write(log, events)
    kept = read_summary(log)
    if kept is not None:  # the writer gives up where it could not be exact
        assert _same(kept, _parsed(log))
    # the index's columns are the same with or without the summary file
    run = log.parent.parent
    with_file: dict = {}
    metric_summaries(str(run), with_file)
    summary_path(log).unlink(missing_ok=True)
    without: dict = {}
    metric_summaries(str(run), without)
    assert json.dumps(with_file, sort_keys=True) == json.dumps(without, sort_keys=True)


def test_plain_and_resumed_logs_keep_a_summary(tmp_path):
    log = tmp_path / "metrics" / "train.json"
    events = [(s, {"loss": 1.0 / (s + 1), "acc": s / 10}, 1 if s % 3 else 0) for s in range(10)]
    _write(log, events)
    assert read_summary(log) == _parsed(log)
    rows, keys = read_summary(log)
    assert rows == 10 and keys["loss"][1:6] == [1 / 10, 1.0, 9, 0, 10]
    # a resume that continues where the run stopped keeps it, across writers
    _write(log, [(10, {"loss": 0.01}, 0), (10, {"acc": 2.0}, 0)])
    assert read_summary(log) == _parsed(log)
    assert read_summary(log)[0] == 11
    # a resume from an earlier checkpoint logs steps again: the summary goes, the log is read
    _write(log, [(4, {"loss": 0.001}, 0)])
    assert read_summary(log) is None
    assert not summary_path(log).exists()
    row: dict = {}
    metric_summaries(str(tmp_path), row)
    expected = _parsed(log)
    assert row["train.rows"] == expected[0] == 11
    assert row["train.loss.min"] == 0.001 and row["train.loss.argmin_step"] == 4


def test_a_summary_not_covering_the_log_is_not_taken(tmp_path):
    log = tmp_path / "metrics" / "train.json"
    _write(log, [(s, {"loss": float(s)}, 0) for s in range(5)])
    assert read_summary(log) is not None
    with open(log, "ab") as fh:  # another writer appended after the summary
        fh.write(b'{"step": 5, "loss": -1.0}\n')
    assert read_summary(log) is None
    row: dict = {}
    metric_summaries(str(tmp_path), row)
    assert row["train.loss.min"] == -1.0 and row["train.loss.argmin_step"] == 5
    # a writer opening it again reads the log once and keeps the summary from there
    _write(log, [(6, {"loss": 7.0}, 0)])
    assert read_summary(log) == _parsed(log)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"format": 1, "log_bytes": "x"}',
        b'{"format": 2, "log_bytes": 0, "rows": 0, "keys": {}, "pending": null, "previous": null}',
        b'{"format": 1, "log_bytes": 0, "rows": 0, "keys": {"a": [1]}, "pending": null,'
        b' "previous": null}',
        b'{"format": 1, "log_bytes": 0, "rows": 0, "keys": {"a": [[1], 1, 1, 0, 0, 1, 0]},'
        b' "pending": null, "previous": null}',
        b'{"format": 1, "log_bytes": 0, "rows": 0, "keys": {"a": ["x", "y", 1, 0, 0, 1, 0]},'
        b' "pending": null, "previous": null}',
    ],
)
def test_hostile_summary_files_are_not_taken(tmp_path, content):
    log = tmp_path / "metrics" / "train.json"
    _write(log, [(s, {"loss": float(s)}, 0) for s in range(3)])
    size = log.stat().st_size
    summary_path(log).write_bytes(
        content.replace(b'"log_bytes": 0', f'"log_bytes": {size}'.encode())
    )
    assert read_summary(log) is None
    row: dict = {}
    metric_summaries(str(tmp_path), row)
    assert row["train.loss.max"] == 2.0 and row["train.rows"] == 3


def test_linked_or_huge_summary_files_are_not_read(tmp_path):
    log = tmp_path / "metrics" / "train.json"
    _write(log, [(s, {"loss": float(s)}, 0) for s in range(3)])
    good = summary_path(log).read_bytes()
    outside = tmp_path / "outside.json"
    outside.write_bytes(good)
    summary_path(log).unlink()
    os.symlink(outside, summary_path(log))
    assert read_summary(log) is None
    summary_path(log).unlink()
    os.mkfifo(summary_path(log))  # never blocks
    assert read_summary(log) is None
    summary_path(log).unlink()
    summary_path(log).write_bytes(b" " * (2 * 1024 * 1024) + good)
    assert read_summary(log) is None


def test_a_linked_summary_dir_is_not_read(tmp_path):
    log = tmp_path / "metrics" / "train.json"
    _write(log, [(s, {"loss": float(s)}, 0) for s in range(3)])
    outside = tmp_path / "outside"
    (tmp_path / "metrics" / ".summary").rename(outside)
    os.symlink(outside, tmp_path / "metrics" / ".summary")
    assert read_summary(log, root=tmp_path) is None
    row: dict = {}
    metric_summaries(str(tmp_path), row)
    assert row["train.loss.max"] == 2.0
