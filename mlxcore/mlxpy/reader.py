"""Reading many runs back: an indexed :class:`Reader` returning pandas DataFrames."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from mlxpy import query as query_lang
from mlxpy.index import RunIndex
from mlxpy.rundir.claim import is_locked
from mlxpy.rundir.layout import RunDir
from mlxpy.rundir.status import RunStatus

STALE_AFTER_BEATS = 3


def _process_gone(row: dict[str, Any]) -> bool:
    """Whether the run's process is known to be dead: its lock is free (the kernel drops it
    when the process dies), or on this host its pid no longer exists."""
    locked = is_locked(RunDir(Path(row.get("log_dir", ""))).lock)
    if locked is None:
        return row.get("info.hostname") == socket.gethostname() and not _pid_alive(row)
    return not locked


def _pid_alive(row: dict[str, Any]) -> bool:
    try:
        os.kill(int(row.get("info.pid")), 0)
    except (TypeError, ValueError, ProcessLookupError):
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
        beat = os.stat(RunDir(Path(row["log_dir"])).heartbeat).st_mtime
    except (OSError, KeyError):
        beat = 0.0
    if now - beat > STALE_AFTER_BEATS * interval and _process_gone(row):
        return RunStatus.LOST.value
    return RunStatus.RUNNING.value


class Reader:
    """All runs of ``parent_log_dir``, indexed on disk beside them.

    Opening refreshes the index incrementally: only runs whose files changed since the last
    open are read again. ``reload=True`` rebuilds it.
    """

    def __init__(
        self,
        parent_log_dir: str | os.PathLike = "./logs",
        reload: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.parent_log_dir = Path(parent_log_dir).resolve()
        self._index = RunIndex(self.parent_log_dir, reload=reload)
        self._progress = progress
        self.refresh()

    def refresh(self) -> None:
        """Pick up new, changed and deleted runs."""
        rows = self._index.refresh(self._progress)
        now = time.time()
        for row in rows:
            if row.get("info.status") == RunStatus.RUNNING:
                row["info.status"] = honest_status(row, now)
        frame = pd.DataFrame.from_records(rows)
        if frame.empty:
            frame = pd.DataFrame({"log_id": pd.Series(dtype="int64")})
        # nullable dtypes: an int key missing in some runs stays an int (not 1.0, 2.0)
        frame = frame.convert_dtypes()
        frame = frame.set_index("log_id", drop=False).sort_index()
        frame.index.name = "log_id"
        ordered = sorted(frame.columns, key=_column_order)
        self._frame = frame[ordered]
        self._frame.attrs["mlxpy_parent_log_dir"] = str(self.parent_log_dir)

    @property
    def skipped(self) -> dict[str, str]:
        """What the last refresh did not read, with why: unreadable run dirs (``"3"``), metric
        logs (``"3/metrics/train.json"``), names that are no run id, symbolic links."""
        return dict(self._index.skipped)

    def __len__(self) -> int:
        return len(self._frame)

    @property
    def fields(self) -> dict[str, str]:
        """Every queryable key and the type of its values."""
        out = {}
        for column in self._frame.columns:
            values = self._frame[column].dropna()
            kinds = sorted(
                {type(v.item() if hasattr(v, "item") else v).__name__ for v in values.head(1000)}
            )
            out[column] = "|".join(kinds) if kinds else "none"
        return out

    searchable = fields

    def filter(self, query_string: str = "", result_format: str = "pandas") -> Any:
        """The runs matching ``query_string``, one row per run, indexed by log id."""
        tree = query_lang.parse(query_string)
        mask = query_lang.evaluate(tree, self._frame, query_string)
        result = self._frame[mask.to_numpy(dtype=bool)].copy()
        result.attrs["mlxpy_parent_log_dir"] = str(self.parent_log_dir)
        if result_format == "pandas":
            return result
        if result_format == "records":
            return result.to_dict(orient="records")
        raise ValueError(f"result_format must be 'pandas' or 'records', got {result_format!r}")

    def close(self) -> None:
        self._index.close()


def _column_order(column: str) -> tuple[int, str]:
    for rank, prefix in enumerate(("log_id", "info.status", "config.", "info.")):
        if column == prefix or column.startswith(prefix):
            return rank, column
    return (5 if column == "log_dir" else 4), column


# the pandas accessor ``runs.mlxpy`` is registered with the Reader
from mlxpy import runs_accessor  # noqa: E402,F401
