"""The on-disk index of a parent log dir: one row per run with its flattened config, info and
metric summaries, refreshed incrementally (only runs whose files changed are read again).

SQLite (standard library) in WAL mode: many readers can open and refresh it at once, a
refresh is one transaction, and runs being written are never locked or touched.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError, MlxpyWarning
from mlxpy.rundir import codec
from mlxpy.rundir.flat import flatten
from mlxpy.rundir.info import read_record
from mlxpy.rundir.layout import (
    FORMAT_VERSION,
    INDEX_FILE,
    LEGACY_FORMAT,
    METADATA_DIR,
    METRICS_DIR,
    METRICS_SUFFIX,
    is_run_id,
)
from mlxpy.rundir.metrics import latest_per_step, read_records

#: 3: metric summaries count one record per step
SCHEMA_VERSION = 3


class SkippedRunsWarning(MlxpyWarning):
    """Some run directories could not be read; they are left out of the results."""


def index_path(parent: Path) -> Path:
    """Beside the runs, or in the user's cache dir when the log dir is read-only."""
    if os.access(parent, os.W_OK):
        return parent / INDEX_FILE
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlxpy" / "index"
    cache.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(parent.resolve()).encode()).hexdigest()[:16]
    return cache / f"{digest}.sqlite"


def signature(run_dir: str) -> str | None:
    """Cheap change detection: the metadata dir's mtime (its files are replaced by rename on
    every update) and the size and mtime of each metrics file (appended to)."""
    try:
        parts = [str(os.stat(os.path.join(run_dir, METADATA_DIR)).st_mtime_ns)]
    except OSError:
        return None
    try:
        with os.scandir(os.path.join(run_dir, METRICS_DIR)) as entries:
            for entry in entries:
                if entry.name.endswith(METRICS_SUFFIX) and entry.is_file(follow_symlinks=False):
                    st = entry.stat()
                    parts.append(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    except OSError:
        pass
    return "|".join(sorted(parts))


def metric_summaries(run_dir: str, out: dict[str, Any]) -> None:
    """``<log>.<key>.last/min/max`` and ``<log>.rows`` for every metric log of a run, over one
    record per step (the latest: a resumed run may have logged a step twice)."""
    metrics_dir = os.path.join(run_dir, METRICS_DIR)
    try:
        names = [n for n in os.listdir(metrics_dir) if n.endswith(METRICS_SUFFIX)]
    except OSError:
        return
    for name in names:
        log = name[: -len(METRICS_SUFFIX)]
        records = latest_per_step(read_records(Path(metrics_dir) / name, root=Path(run_dir)))
        out[f"{log}.rows"] = len(records)
        last: dict[str, Any] = {}
        for record in records:
            last.update(record)
        uniform = sum(map(len, records)) == len(records) * len(last)
        for key, value in last.items():
            out[f"{log}.{key}.last"] = value
            column = [r[key] for r in records] if uniform else [r[key] for r in records if key in r]
            low, high = _min_max(column)
            if low is not None:
                out[f"{log}.{key}.min"] = low
                out[f"{log}.{key}.max"] = high


def _min_max(values: list[Any]) -> tuple[Any, Any]:
    """Min and max of the numbers among ``values`` (NaN, bools and strings ignored)."""
    try:
        low, high = min(values), max(values)
        if (
            type(low) in (int, float)
            and type(high) in (int, float)
            and low == low
            and (high == high)
        ):
            if not any(type(v) is bool for v in (low, high)):
                return low, high
    except (TypeError, ValueError):
        pass
    numbers = [v for v in values if type(v) in (int, float) and v == v]
    return (min(numbers), max(numbers)) if numbers else (None, None)


def read_run(run_dir: str) -> dict[str, Any]:
    """The flattened row of one run; raises on an unreadable run."""
    config, info = read_record(Path(run_dir))
    check_format(info)
    row = flatten(config, "config")
    row.update(flatten(info, "info"))
    metric_summaries(run_dir, row)
    return row


class NewerFormatError(MlxpyError, ValueError):
    """A run was written by a newer mlxpy whose run-directory format this one cannot read."""


def check_format(info: dict[str, Any]) -> int:
    """The run's format version (0 for runs written before it had one); a newer one than
    this mlxpy knows is refused, so nothing is misread."""
    version = info.get("format", LEGACY_FORMAT)
    if type(version) is not int or version < 0:
        raise ValueError(f"info.format is {version!r}, not a format version")
    if version > FORMAT_VERSION:
        raise NewerFormatError(
            f"written by a newer mlxpy (run-directory format {version}; this mlxpy reads up to "
            f"{FORMAT_VERSION}): upgrade mlxpy to read it"
        )
    return version


def encode_row(row: dict[str, Any]) -> bytes:
    return codec.encode(row)


class RunIndex:
    """Rows of every run under ``parent``, kept in SQLite and refreshed incrementally."""

    def __init__(self, parent: Path, reload: bool = False) -> None:
        self.parent = Path(parent).resolve()
        if not self.parent.is_dir():
            raise MlxpyError(f"no log directory at {self.parent}")
        self.path = index_path(self.parent)
        self.skipped: dict[str, str] = {}
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if reload or version != SCHEMA_VERSION:
            self.db.execute("DROP TABLE IF EXISTS runs")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS runs (log_id TEXT PRIMARY KEY, sig TEXT, row BLOB)"
        )

    def refresh(self, progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Bring the index up to date and return every run's row."""
        known = dict(self.db.execute("SELECT log_id, sig FROM runs"))
        current: dict[str, str] = {}
        with os.scandir(self.parent) as entries:
            for entry in entries:
                if is_run_id(entry.name) and entry.is_dir(follow_symlinks=False):
                    sig = signature(entry.path)
                    if sig is not None:
                        current[entry.name] = sig
        stale = [name for name, sig in current.items() if known.get(name) != sig]
        gone = [name for name in known if name not in current]
        self.skipped = {}
        updates = []
        for done, name in enumerate(stale, start=1):
            try:
                row = read_run(os.path.join(self.parent, name))
            except Exception as exc:  # a corrupt or half-written run: count it, go on
                self.skipped[name] = f"{type(exc).__name__}: {exc}"
                continue
            row["log_id"] = int(name)
            row["log_dir"] = os.path.join(self.parent, name)
            updates.append((name, current[name], encode_row(row)))
            if progress is not None and (done % 500 == 0 or done == len(stale)):
                progress(done, len(stale))
        if updates or gone:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany(
                    "INSERT OR REPLACE INTO runs (log_id, sig, row) VALUES (?, ?, ?)", updates
                )
                self.db.executemany("DELETE FROM runs WHERE log_id = ?", [(g,) for g in gone])
        if self.skipped:
            names = ", ".join(sorted(self.skipped, key=_natural)[:10])
            more = "" if len(self.skipped) <= 10 else f" and {len(self.skipped) - 10} more"
            warnings.warn(
                f"skipped {len(self.skipped)} unreadable run dir(s) in {self.parent}: "
                f"{names}{more}",
                SkippedRunsWarning,
                stacklevel=3,
            )
        return [codec.decode(blob) for (blob,) in self.db.execute("SELECT row FROM runs")]

    def close(self) -> None:
        self.db.close()


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 62, name)
