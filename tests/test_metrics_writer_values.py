"""The writer's fast path (orjson with a converting ``default``) against its checked path: every
value that is not a plain scalar, and every string that looks like JSON syntax, is written exactly
as the checked path would write it, or refused with the metric's name."""

from __future__ import annotations

import datetime
import enum
import math
import uuid
from pathlib import Path

import numpy as np
import orjson
import pytest
from mlxpy.rundir.metrics import MetricsWriter, read_records
from mlxpy.rundir.summary import read_summary, summary_path


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


class Colour(enum.Enum):
    RED = "red"


def _writer(tmp_path: Path) -> MetricsWriter:
    return MetricsWriter(tmp_path / "train.json", tmp_path / ".keys" / "train.json", "train", 2)


def _untimed(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "_time"}


def test_odd_values_are_written_as_the_checked_path_writes_them(tmp_path):
    writer = _writer(tmp_path)
    rows = [
        ({"s": "[1, 2]", "t": '{"a": 1}', "u": "null"}, 0),
        ({"e": Level.HIGH, "n": Name("x"), "b": np.bool_(False)}, np.int64(1)),
        ({"nan": math.nan, "none": None, "f": np.float64(0.5)}, 2),
        ({"inf": -math.inf, "h": np.float16(0.25), "z": np.array(7)}, 3),
    ]
    for metrics, step in rows:
        writer.write(metrics, step)
    writer.close()
    got = [_untimed(r) for r in read_records(tmp_path / "train.json")]
    assert got[0] == {"step": 0, "s": "[1, 2]", "t": '{"a": 1}', "u": "null"}
    assert got[1] == {"step": 1, "e": 3, "n": "x", "b": False}
    assert [type(v) for v in got[1].values()] == [int, int, str, bool]
    assert math.isnan(got[2]["nan"]) and got[2]["none"] is None and got[2]["f"] == 0.5
    assert got[3] == {"step": 3, "inf": -math.inf, "h": 0.25, "z": 7}


@pytest.mark.parametrize(
    "value",
    [
        [1, 2],
        (1, 2),
        {"a": 1},
        np.zeros(2),
        datetime.datetime(2026, 1, 1),
        object(),
        1j,
        Colour.RED,
        uuid.UUID(int=5),
        orjson.Fragment(b'1,"step":-5'),
    ],
    ids=[
        "list",
        "tuple",
        "dict",
        "array",
        "datetime",
        "object",
        "complex",
        "enum",
        "uuid",
        "fragment",
    ],
)
def test_values_that_are_not_scalars_are_refused_by_name(tmp_path, value):
    writer = _writer(tmp_path)
    with pytest.raises(TypeError, match="metric 'bad'"):
        writer.write({"fine": 1.0, "bad": value}, 0)
    writer.close()
    assert read_records(tmp_path / "train.json") == []


def test_a_step_that_is_no_scalar_is_refused(tmp_path):
    writer = _writer(tmp_path)
    with pytest.raises(TypeError, match="metric 'step'"):
        writer.write({"loss": 1.0}, Colour.RED)
    writer.close()
    assert read_records(tmp_path / "train.json") == []


def test_a_non_string_key_is_refused(tmp_path):
    writer = _writer(tmp_path)
    with pytest.raises(TypeError, match="metric names must be strings"):
        writer.write({1: 0.5}, 0)
    writer.close()


def test_the_summary_is_written_at_close_not_during_the_run(tmp_path):
    writer = _writer(tmp_path)
    for step in range(5):
        writer.write({"loss": 1.0 / (step + 1)}, step)
    writer.flush()
    assert not summary_path(tmp_path / "train.json").exists()  # readers parse a live log
    writer.close()
    rows, keys = read_summary(tmp_path / "train.json")
    assert rows == 5 and keys["loss"][1] == 0.2 and keys["loss"][3] == 4


def test_finish_writes_the_summary_before_the_status_and_close_catches_up(tmp_path):
    """The logger calls finish() before the run records its final status, so a reader that
    sees the status finds the summary; a record logged after that is folded in at close."""
    writer = _writer(tmp_path)
    for step in range(3):
        writer.write({"loss": float(step)}, step)
    writer.finish()
    assert read_summary(tmp_path / "train.json")[0] == 3
    writer.write({"loss": -1.0}, 3)
    writer.close()
    rows, keys = read_summary(tmp_path / "train.json")
    assert rows == 4 and keys["loss"][1] == -1.0
