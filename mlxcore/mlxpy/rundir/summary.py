"""Metric summaries: per log and key, last, min, max, the steps of min and max, count and last
step, over one row per step (:func:`mlxpy.rundir.metrics.latest_per_step`).

:func:`summarize` computes them from a log's rows; that is their definition. When it closes
a log (the run's end), the writer folds what it appended into a :class:`Fold`, starting from
the summary an earlier attempt left, and writes it to ``metrics/.summary/<log>.json``, so a
reader of a finished run takes a few hundred bytes where it would parse the whole log. Not
during the run: ``log_metrics`` is kept near the cost of a plain JSON write, and readers parse
a live run's logs. The fold gives up (and a reader parses the log) where it could not be
exact: a step that goes back (a resumed attempt may supersede earlier rows), a record without
``step`` after records with one, a step that is not a number, a line that would not read back.

The summary file is untrusted input: bounded, JSON only, never through a link, every field
checked; it is taken only when the log's size is the one it names.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from mlxpy.rundir import codec, safe
from mlxpy.rundir.layout import METRICS_SUFFIX, SUMMARY_DIR

#: the summary file's own format version
SUMMARY_FORMAT = 1
#: a summary file larger than this is not written (a log of very many keys) nor read
MAX_SUMMARY_BYTES = 1024 * 1024
#: the per-key fields, in the file's lists and the index's column names
FIELDS = ("last", "min", "max", "argmin_step", "argmax_step", "count", "last_step")
_STEP = "step"


def summary_path(log_path: Path) -> Path:
    """``metrics/.summary/<log>.json`` beside ``metrics/<log>.json``."""
    return log_path.parent / SUMMARY_DIR / log_path.name


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and value == value  # not NaN, not a bool


def summarize(rows: list[dict[str, Any]]) -> tuple[int, dict[str, list[Any]]]:
    """The definition: ``(rows, {key: [last, min, max, argmin_step, argmax_step, count,
    last_step]})`` over ``rows`` (one per step, as ``latest_per_step`` gives them). min and
    max are over the numbers (NaN, bools, strings ignored), the first one winning a tie; a
    field without a value (no number, no step) is None."""
    keys: dict[str, list[Any]] = {}
    for row in rows:
        _fold_row(keys, row)
    return len(rows), keys


def _fold_row(keys: dict[str, list[Any]], row: dict[str, Any]) -> None:
    step = row.get(_STEP)
    for key, value in row.items():
        entry = keys.get(key)
        if entry is None:
            entry = keys[key] = [value, None, None, None, None, 0, None]
        entry[0] = value
        entry[5] += 1
        entry[6] = step
        if type(value) in (int, float) and value == value:
            if entry[1] is None or value < entry[1]:
                entry[1], entry[3] = value, step
            if entry[2] is None or value > entry[2]:
                entry[2], entry[4] = value, step


class Fold:
    """The summary of the records appended so far, kept one record at a time. The rows of
    the step being logged are merged (later keys winning) and folded in when the step moves
    on, as ``latest_per_step`` merges records of one step. ``valid`` turns False for good
    where the fold cannot be exact."""

    __slots__ = ("rows", "keys", "pending", "previous", "valid")

    def __init__(self) -> None:
        self.rows = 0
        self.keys: dict[str, list[Any]] = {}
        self.pending: dict[str, Any] | None = None  # the current step's merged row
        self.previous: Any = None  # the last step seen
        self.valid = True

    def add(self, record: dict[str, Any]) -> None:
        if not self.valid:
            return
        if _STEP not in record:
            if self.pending is not None:  # its row would sit before the pending one
                self.valid = False
                return
            self.rows += 1
            _fold_row(self.keys, record)
            return
        step = record[_STEP]
        if not _is_number(step):
            self.valid = False
            return
        pending = self.pending
        if pending is not None and step == self.previous:
            pending.update(record)
            return
        if self.previous is not None and step < self.previous:  # a new attempt
            self.valid = False
            return
        if pending is not None:
            self.rows += 1
            _fold_row(self.keys, pending)
        self.pending = dict(record)
        self.previous = step

    def result(self) -> tuple[int, dict[str, list[Any]]]:
        """``summarize``'s result for the records added (``valid`` must be True)."""
        keys = {k: list(v) for k, v in self.keys.items()}
        rows = self.rows
        if self.pending is not None:
            rows += 1
            _fold_row(keys, self.pending)
        return rows, keys

    # -- the file ---------------------------------------------------------------------------
    def to_json(self, log_bytes: int) -> bytes:
        return codec.encode(
            {
                "format": SUMMARY_FORMAT,
                "log_bytes": log_bytes,
                "rows": self.rows,
                "keys": self.keys,
                "pending": self.pending,
                "previous": self.previous,
            }
        )

    @classmethod
    def from_json(cls, blob: bytes) -> tuple[Fold, int] | None:
        """The fold a summary file holds and the log size it covers; None if it is not one."""
        try:
            doc = codec.decode(blob)
        except ValueError:
            return None
        if type(doc) is not dict or doc.get("format") != SUMMARY_FORMAT:
            return None
        size, rows, keys = doc.get("log_bytes"), doc.get("rows"), doc.get("keys")
        pending, previous = doc.get("pending"), doc.get("previous")
        if type(size) is not int or size < 0 or type(rows) is not int or rows < 0:
            return None
        if type(keys) is not dict or not (pending is None or type(pending) is dict):
            return None
        if not (previous is None or _is_number(previous)):
            return None
        if pending is not None and (previous is None or pending.get(_STEP) != previous):
            return None
        for entry in keys.values():
            if type(entry) is not list or len(entry) != len(FIELDS):
                return None
            if type(entry[5]) is not int or entry[5] < 1:
                return None
            low, high = entry[1], entry[2]
            if not (low is None or _is_number(low)) or not (high is None or _is_number(high)):
                return None
            for value in (*entry[:5], entry[6]):
                if type(value) in (list, dict):  # records hold scalars only
                    return None
        fold = cls()
        fold.rows, fold.keys, fold.pending, fold.previous = rows, keys, pending, previous
        return fold, size


def read_summary(log_path: Path, root: Path | None = None) -> tuple[int, dict] | None:
    """The summary of the log at ``log_path`` from its summary file, or None where that file
    is missing, unreadable, not one, or does not cover the log as it is now (its size). With
    ``root`` (the run dir, whose ``metrics/`` the caller found no link), ``.summary/`` must
    be a directory, not a link."""
    try:
        info = os.lstat(log_path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > safe.MAX_METRICS_BYTES:
            return None  # the reader's own path reads the log and says why it skips it
        where = summary_path(log_path)
        if root is not None:  # no link on the way: the log's dir is checked by the caller
            if not stat.S_ISDIR(os.lstat(where.parent).st_mode):
                return None
        blob = safe.read_bytes(where, MAX_SUMMARY_BYTES)
    except (OSError, safe.UnsafePathError):
        return None
    found = Fold.from_json(blob)
    if found is None or found[1] != info.st_size:
        return None
    return found[0].result()


def log_name_of(path: Path) -> str:
    return path.name[: -len(METRICS_SUFFIX)]
