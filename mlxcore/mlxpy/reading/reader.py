"""Reading many runs back: an indexed :class:`Reader` returning pandas DataFrames."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlxpy.errors import MlxpyError
from mlxpy.reading import query as query_lang
from mlxpy.reading.index import RunIndex
from mlxpy.rundir.claim import is_locked
from mlxpy.rundir.layout import RunDir
from mlxpy.rundir.location import DEFAULT_PARENT_LOG_DIR, resolve_parent_log_dir
from mlxpy.rundir.status import RunStatus

STALE_AFTER_BEATS = 3
#: the frame's index: one row per run
INDEX_NAME = "log_id"
#: columns every frame has, even with no run
EMPTY_COLUMNS = ("info.status", "log_dir")
#: run-info times, read as tz-aware datetimes
TIME_COLUMNS = ("info.start_time", "info.end_time", "info.submit_time")


def _process_gone(row: dict[str, Any]) -> bool:
    """Whether the run's process is known to be dead: its lock is free (the kernel drops it
    when the process dies), or on this host its pid no longer exists."""
    locked = is_locked(RunDir(Path(row.get("log_dir", ""))).lock)
    if locked is None:
        return row.get("info.hostname") == socket.gethostname() and not _pid_alive(row)
    return not locked


def _pid_alive(row: dict[str, Any]) -> bool:
    try:
        os.kill(int(row["info.pid"]), 0)
    except (KeyError, TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def honest_status(row: dict[str, Any], now: float) -> str | None:
    """``LOST`` for a RUNNING run whose heartbeat is stale and whose process is gone."""
    if row.get("info.status") != RunStatus.RUNNING:
        return row.get("info.status")
    interval = row.get("info.heartbeat_interval_s") or 10.0
    try:
        beat = os.lstat(RunDir(Path(row["log_dir"])).heartbeat).st_mtime  # never a link's target
    except (OSError, KeyError):
        beat = 0.0
    if now - beat > STALE_AFTER_BEATS * interval and _process_gone(row):
        return RunStatus.LOST.value
    return RunStatus.RUNNING.value


class Reader:
    """All runs of ``parent_log_dir``, indexed on disk beside them.

    A relative ``parent_log_dir`` is relative to ``project_dir`` (default: the current
    directory), as the logger's is to the task's directory: ``Reader("./logs",
    project_dir="path/to/project")`` reads the runs ``path/to/project/main.py`` wrote
    (:mod:`mlxpy.rundir.location`). Opening refreshes the index incrementally: only runs whose
    files changed since the last open are read again. ``reload=True`` rebuilds it. An empty
    dir gives an empty frame; a missing or unreadable one is an :class:`MlxpyError`.
    """

    def __init__(
        self,
        parent_log_dir: str | os.PathLike = DEFAULT_PARENT_LOG_DIR,
        reload: bool = False,
        progress: Callable[[int, int], None] | None = None,
        *,
        project_dir: str | os.PathLike | None = None,
    ) -> None:
        self.parent_log_dir = resolve_parent_log_dir(parent_log_dir, project_dir).resolve()
        self._progress = progress
        try:  # a missing dir is an MlxpyError already; an unreadable one becomes one
            self._index = RunIndex(self.parent_log_dir, reload=reload)
            self.refresh()
        except (OSError, sqlite3.Error) as exc:
            raise MlxpyError(f"cannot read the log directory {self.parent_log_dir}: {exc}") from exc

    def refresh(self) -> None:
        """Pick up new, changed and deleted runs."""
        frame = self._index.refresh(self._progress).frame()
        for column in EMPTY_COLUMNS:
            if column not in frame.columns:
                frame[column] = np.full(len(frame), None, dtype=object)
        status = frame["info.status"]
        running = (status == RunStatus.RUNNING.value).to_numpy(dtype=bool, na_value=False)
        if running.any():  # only live runs' files are looked at again
            now = time.time()
            columns = list(frame.columns)
            where = np.flatnonzero(running)
            values = status.to_numpy(dtype=object).copy()
            for i in where:
                row = dict(zip(columns, frame.iloc[i].tolist(), strict=True))
                values[i] = honest_status(row, now)
            frame["info.status"] = pd.Series(values, index=frame.index, dtype=status.dtype)
        columns = sorted(map(str, frame.columns), key=_column_order)
        self._frame = frame[columns]
        self._frame.attrs["mlxpy_parent_log_dir"] = str(self.parent_log_dir)

    @property
    def skipped(self) -> dict[str, str]:
        """What the last refresh did not read, with why: unreadable run dirs (``"3"``), metric
        logs (``"3/metrics/train.json"``), names that are no run id, symbolic links."""
        return dict(self._index.skipped)

    @property
    def generation(self) -> int | None:
        """A number that changes when the index picks up a change to any run's files, for a
        live view to know when to read again (``mlxpy ui``); None when the index is not kept
        on disk. Statuses worked out at open (LOST) are not counted: compare those too."""
        return self._index.generation

    def signatures(self) -> dict[int, str]:
        """log id -> the run's signature as the index last saw it (its files' sizes and
        modification times): equal while the index saw no change to the run (``mlxpy ui``
        keeps each run's curves while it is)."""
        return self._index.signatures()

    def __len__(self) -> int:
        return len(self._frame)

    @property
    def fields(self) -> dict[str, str]:
        """Every queryable key and the type of its values (``log_id`` is the index)."""
        out = {INDEX_NAME: "int"}
        for column in self._frame.columns:
            series = self._frame[column]
            kind = _dtype_name(series)
            if kind is None:
                values = series.dropna().head(1000)
                kinds = sorted({type(v).__name__ for v in values})
                kind = "|".join(kinds) if kinds else "none"
            out[column] = kind
        return out

    def filter(self, query_string: str = "", result_format: str = "pandas") -> Any:
        """The runs matching ``query_string``, one row per run; the index is ``log_id``.
        ``result_format="records"`` gives a list of dicts, each with its ``log_id``."""
        tree = query_lang.parse(query_string)
        mask = query_lang.evaluate(tree, _QueryView(self._frame), query_string)
        result = self._frame[mask.to_numpy(dtype=bool)].copy()
        result.attrs["mlxpy_parent_log_dir"] = str(self.parent_log_dir)
        if result_format == "pandas":
            return result
        if result_format == "records":
            return result.reset_index().to_dict(orient="records")
        raise ValueError(f"result_format must be 'pandas' or 'records', got {result_format!r}")

    def close(self) -> None:
        self._index.close()


def _column_order(column: str) -> tuple[int, str]:
    for rank, prefix in enumerate(("info.status", "config.", "info.")):
        if column == prefix or column.startswith(prefix):
            return rank, column
    return (4 if column == "log_dir" else 3), column


class _QueryView:
    """The frame as the query language sees it: its columns, plus ``log_id`` (the index),
    without copying the frame; times are ISO 8601 strings (UTC) there, as written."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self.index = frame.index
        self.columns = [INDEX_NAME, *frame.columns]

    def __getitem__(self, name: str) -> pd.Series:
        if name == INDEX_NAME:
            return pd.Series(self.index, index=self.index, name=INDEX_NAME)
        column = self._frame[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):  # compared with '2026-12-01...'
            return column.map(lambda t: None if pd.isna(t) else t.isoformat())
        return column


def typed_frame(
    records: list[dict[str, Any]], index: pd.Index | None = None, columns: Sequence[str] = ()
) -> pd.DataFrame:
    """A frame whose columns keep the types of the values: a float stays float even when
    integral (10.0), NaN stays NaN, an int missing in some records stays an int (``Int64``),
    bools stay bool and strings strings; anything else (mixed, lists) is ``object``, with None
    where missing. ``convert_dtypes`` would turn 10.0 into 10 and NaN into <NA>."""
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    data: dict[str, Any] = {}
    for key in frame.columns:
        # from_records already types whole columns of one kind; a column with missing values
        # (float NaN there) or of mixed kinds is typed again from the values themselves
        column = frame[key]
        if column.dtype == object or (column.dtype.kind == "f" and column.isna().any()):
            data[key] = _typed([r.get(key) for r in records])
        else:
            data[key] = column.array
    for key in columns:
        data.setdefault(key, np.full(len(records), None, dtype=object))
    return pd.DataFrame(data, index=pd.RangeIndex(len(records)) if index is None else index)


def records_frame(logs: list[list[dict[str, Any]]], skip: Collection[str] = ()) -> pd.DataFrame:
    """The frame :func:`typed_frame` gives for the records of ``logs`` one after another (the
    same columns in the same order, the same dtypes), built column-wise: each key's values are
    gathered with C-level ``map`` calls and typed once, with no per-record frame machinery.
    Keys in ``skip`` are left out (columns a caller would drop)."""
    records = logs[0] if len(logs) == 1 else list(chain.from_iterable(logs))
    if not records:
        return pd.DataFrame()
    order: dict[str, None] = {}  # the keys in the order they first appear, as from_records
    for log in logs:
        if log and len(set().union(*log)) == len(log[0]):  # the first record has every key
            order.update(dict.fromkeys(log[0]))
        else:
            order.update(dict.fromkeys(chain.from_iterable(log)))
    data: dict[str, Any] = {}
    for key in order:
        if key not in skip:
            data[key] = _typed(list(map(dict.get, records, repeat(key))), unsigned=True)
    return pd.DataFrame(data, index=pd.RangeIndex(len(records)), copy=False)


def _typed(values: list[Any], unsigned: bool = False) -> Any:
    kinds = set(map(type, values))
    missing = type(None) in kinds
    kinds.discard(type(None))
    if not kinds:
        return np.array(values, dtype=object)
    if kinds == {bool}:
        return pd.array(values, dtype="boolean") if missing else np.array(values, dtype=bool)
    if kinds == {int}:
        try:
            return pd.array(values, dtype="Int64") if missing else np.array(values, dtype=np.int64)
        except (OverflowError, TypeError, ValueError):  # beyond int64
            pass
        if unsigned and not missing:  # from_records' uint64, for ints in [2**63, 2**64)
            try:
                return np.array(values, dtype=np.uint64)
            except (OverflowError, TypeError, ValueError):
                pass
        return np.array(values, dtype=object)
    if kinds <= {int, float}:
        return np.array(values, dtype=np.float64)  # None -> NaN, like the NaN values
    if kinds == {str}:
        return pd.Series(values, dtype=None).array  # pandas' own string dtype
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _times(series: pd.Series) -> pd.Series:
    """ISO 8601 times with an offset, as tz-aware (UTC) datetimes; unreadable ones NaT."""
    if pd.api.types.is_string_dtype(series) or series.isna().all():
        return pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    return series  # not times (a plugin's own values): left as they are


def _dtype_name(series: pd.Series) -> str | None:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.StringDtype):
        return "str"
    return None


# the pandas accessor ``runs.mlxpy`` is registered with the Reader
from mlxpy.reading import accessor  # noqa: E402,F401
