"""The on-disk index of a parent log dir: one row per run with its flattened config, info and
metric summaries, refreshed incrementally (only runs whose files changed are read again).

SQLite (standard library) in WAL mode: many readers can open and refresh it at once, a
refresh is one transaction, and runs being written are never locked or touched. The index is
a cache: a corrupt one is rebuilt, and where it cannot be written (a read-only or full disk)
it moves to the user's cache dir, or to memory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import sqlite3
import stat
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError, MlxpyWarning
from mlxpy.rundir import codec, safe
from mlxpy.rundir.flat import flatten
from mlxpy.rundir.info import read_record
from mlxpy.rundir.layout import (
    CONFIG_FILE,
    FORMAT_VERSION,
    INDEX_FILE,
    INFO_FILE,
    LEGACY_FORMAT,
    METADATA_DIR,
    METRICS_DIR,
    METRICS_SUFFIX,
    RUN_JSON,
    is_run_id,
)
from mlxpy.rundir.metrics import latest_per_step, read_records
from mlxpy.rundir.summary import read_summary, summarize

#: 4: metric summaries count one record per step; metadata files in the signature; notes
SCHEMA_VERSION = 4
#: how long opening or refreshing waits for other processes holding the index's write lock
LOCK_WAIT_S = 60.0
#: the reasons ``Reader.skipped`` gives for entries of the log dir that are not read
NOT_A_RUN_ID = "not a run id (run ids are decimal numbers: 1, 2, ...)"
SYMLINK = "symbolic link, not followed"
IN_MEMORY = ":memory:"


class SkippedRunsWarning(MlxpyWarning):
    """Some run directories or metric logs could not be read; they are left out."""


class IndexWarning(MlxpyWarning):
    """The index file was corrupt (it is rebuilt) or cannot be written where it is (it moves
    to the cache dir, or to memory); the runs are read either way."""


def _cache_index(parent: Path) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlxpy" / "index"
    cache.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(parent.resolve()).encode()).hexdigest()[:16]
    return cache / f"{digest}.sqlite"


def _places(parent: Path) -> Iterator[str]:
    """Where the index may live, best first: beside the runs, the cache dir, memory."""
    first = parent / INDEX_FILE if os.access(parent, os.W_OK) else None
    if first is not None:
        yield str(first)
    try:
        yield str(_cache_index(parent))
    except OSError:
        pass
    yield IN_MEMORY


def _code(exc: sqlite3.Error) -> str:
    """SQLite's error name (Python >= 3.11), else one derived from the message."""
    name = getattr(exc, "sqlite_errorname", None)
    if name:
        return str(name)
    message = str(exc).lower()
    for words, code in (
        (("locked",), "SQLITE_LOCKED"),
        (("busy",), "SQLITE_BUSY"),
        (("disk is full",), "SQLITE_FULL"),
        (("readonly", "read-only"), "SQLITE_READONLY"),
        (("unable to open",), "SQLITE_CANTOPEN"),
        (("disk i/o",), "SQLITE_IOERR"),
        (("not a database",), "SQLITE_NOTADB"),
        (("malformed",), "SQLITE_CORRUPT"),
    ):
        if any(w in message for w in words):
            return code
    return "SQLITE_ERROR"


_UNWRITABLE = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR")


def _is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc).startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _is_unwritable(exc: sqlite3.Error) -> bool:
    return _code(exc).startswith(_UNWRITABLE)


def _is_corrupt(exc: sqlite3.Error) -> bool:
    return _code(exc).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _waiting(action: Callable[[], Any]) -> Any:
    """Run ``action``, again while another process holds the lock. SQLite's own busy timeout
    does not cover every case (changing the journal mode to WAL returns SQLITE_BUSY at once
    while another connection creates the fresh file)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.25)


def _remove_index(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def _stat_part(path: str, label: str) -> str:
    st = os.lstat(path)
    return f"{label}:{st.st_mode:o}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def signature(run_dir: str) -> str | None:
    """Cheap change detection, without following links: the metadata dir (its files are
    replaced by rename on every update) and its run files (in case someone rewrote one in
    place), and each metrics file (appended to). None when there is no metadata dir."""
    metadata = os.path.join(run_dir, METADATA_DIR)
    try:
        parts = [_stat_part(metadata, METADATA_DIR)]
    except OSError:
        return None
    for name in (RUN_JSON, INFO_FILE, CONFIG_FILE):
        try:
            parts.append(_stat_part(os.path.join(metadata, name), name))
        except OSError:
            pass
    metrics = os.path.join(run_dir, METRICS_DIR)
    try:
        parts.append(_stat_part(metrics, METRICS_DIR))
        if not os.path.islink(metrics):
            with os.scandir(metrics) as entries:
                for entry in entries:
                    if entry.name.endswith(METRICS_SUFFIX):
                        parts.append(_stat_part(entry.path, entry.name))
    except OSError:
        pass
    return "|".join(sorted(parts))


def _reason(exc: BaseException) -> str:
    """Why a file was not read, in a few words."""
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return SYMLINK
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def metric_summaries(
    run_dir: str, out: dict[str, Any], notes: dict[str, str] | None = None
) -> None:
    """For every metric log of a run, ``<log>.rows`` and per key ``<log>.<key>.last``,
    ``.min``, ``.max``, ``.argmin_step``, ``.argmax_step``, ``.count`` and ``.last_step``
    (:mod:`mlxpy.rundir.summary`), over one record per step (the latest: a resumed run may
    have logged a step twice). The writer's summary file is taken where it covers the log;
    otherwise the log is parsed, with the same result. A log that cannot be read (a link, a
    FIFO, too large) is left out and told in ``notes``, as ``"<id>/metrics/<log>.json":
    reason``; so is a line too long to read."""
    notes = {} if notes is None else notes
    metrics_dir = os.path.join(run_dir, METRICS_DIR)
    label = f"{os.path.basename(run_dir)}/{METRICS_DIR}"
    try:
        mode = os.lstat(metrics_dir).st_mode
        if stat.S_ISLNK(mode):
            notes[label] = SYMLINK
            return
        names = sorted(n for n in os.listdir(metrics_dir) if n.endswith(METRICS_SUFFIX))
    except FileNotFoundError:
        return
    except OSError as exc:
        notes[label] = _reason(exc)
        return
    root = Path(run_dir)
    for name in names:
        log = name[: -len(METRICS_SUFFIX)]
        path = Path(metrics_dir) / name
        summary = read_summary(path, root)
        if summary is None:
            bad: list[str] = []
            try:
                records = read_records(path, root, bad.append)
            except (OSError, safe.UnsafePathError) as exc:
                notes[f"{label}/{name}"] = _reason(exc)
                continue
            overlong = [m.rpartition(": ")[2] for m in bad if "longer than" in m]
            if overlong:
                notes[f"{label}/{name}"] = "; ".join(overlong[:3]) + (
                    f" and {len(overlong) - 3} more" if len(overlong) > 3 else ""
                )
            summary = summarize(latest_per_step(records))
        summary_columns(log, summary, out)


def summary_columns(log: str, summary: tuple[int, dict[str, list]], out: dict[str, Any]) -> None:
    """The index's columns of one log's summary; fields without a value are left out."""
    rows, keys = summary
    out[f"{log}.rows"] = rows
    for key, (last, low, high, argmin, argmax, count, last_step) in keys.items():
        prefix = f"{log}.{key}."
        out[prefix + "last"] = last
        out[prefix + "count"] = count
        if low is not None:
            out[prefix + "min"] = low
            out[prefix + "max"] = high
        if key == "step":  # its steps are itself
            continue
        if argmin is not None:
            out[prefix + "argmin_step"] = argmin
        if argmax is not None:
            out[prefix + "argmax_step"] = argmax
        if last_step is not None:
            out[prefix + "last_step"] = last_step


def read_run(run_dir: str, notes: dict[str, str] | None = None) -> dict[str, Any]:
    """The flattened row of one run; raises on an unreadable run. Metric logs that cannot be
    read are left out and told in ``notes``."""
    config, info = read_record(Path(run_dir))
    check_format(info)
    row = flatten(config, "config")
    row.update(flatten(info, "info"))
    metric_summaries(run_dir, row, notes)
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
        #: what the last refresh did not read, with why: run dirs, metric logs, other names
        self.skipped: dict[str, str] = {}
        self._reload = reload
        self._places = _places(self.parent)
        self.path = ""
        self.db = self._connect_next()

    # -- opening --------------------------------------------------------------------------
    def _connect_next(self, why: str = "") -> sqlite3.Connection:
        """Open the index at the next place it can live (the first one, at first)."""
        for place in self._places:
            try:
                db = self._open(place)
            except sqlite3.Error as exc:
                if not _is_unwritable(exc) or place == IN_MEMORY:
                    raise
                why = f"cannot write the index at {place} ({exc})"
                continue
            if why:
                warnings.warn(f"{why}; using {place} instead", IndexWarning, stacklevel=4)
            self.path = place
            return db
        raise AssertionError("the in-memory index always opens")  # pragma: no cover

    def _open(self, place: str) -> sqlite3.Connection:
        """Connect and set up the schema; a corrupt file is removed and made again."""
        for attempt in (1, 2):
            db = sqlite3.connect(place, timeout=LOCK_WAIT_S, isolation_level=None)
            try:
                self._prepare(db)
                return db
            except sqlite3.DatabaseError as exc:
                db.close()
                if attempt == 2 or place == IN_MEMORY or not _is_corrupt(exc):
                    raise
                warnings.warn(
                    f"the index {place} is corrupt ({exc}); rebuilding it from the runs",
                    IndexWarning,
                    stacklevel=5,
                )
                _remove_index(place)
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare(self, db: sqlite3.Connection) -> None:
        _waiting(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
        db.execute("PRAGMA synchronous=NORMAL")

        def schema() -> None:
            # one transaction, so two processes making a fresh index never drop each
            # other's table; the version is read inside it
            db.execute("BEGIN IMMEDIATE")
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if self._reload or version != SCHEMA_VERSION:
                    db.execute("DROP TABLE IF EXISTS runs")
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS runs "
                    "(log_id TEXT PRIMARY KEY, sig TEXT, row BLOB, notes BLOB)"
                )
                db.execute("SELECT count(*) FROM runs").fetchone()  # reads the pages
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

        _waiting(schema)
        self._reload = False  # done once; a rebuilt or moved index starts empty anyway

    # -- refreshing -----------------------------------------------------------------------
    def refresh(self, progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Bring the index up to date and return every run's row."""
        try:
            rows = self._refresh(progress)
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                raise
            self.db.close()
            if _is_corrupt(exc) and self.path != IN_MEMORY:
                warnings.warn(
                    f"the index {self.path} is corrupt ({exc}); rebuilding it from the runs",
                    IndexWarning,
                    stacklevel=3,
                )
                _remove_index(self.path)
                self.db = self._open(self.path)
            elif _is_unwritable(exc):
                self.db = self._connect_next(f"cannot write the index at {self.path} ({exc})")
            else:
                raise
            rows = self._refresh(progress)
        self._warn_skipped()
        return rows

    def _scan(self) -> tuple[dict[str, str], dict[str, str]]:
        """The run dirs of the parent with their signatures, and what is not read (names that
        are not run ids, symbolic links: never followed, whatever they point at)."""
        current: dict[str, str] = {}
        other: dict[str, str] = {}
        with os.scandir(self.parent) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):  # the index's own files, hidden tools' dirs
                    continue
                if entry.is_symlink():
                    other[name] = SYMLINK
                elif not entry.is_dir(follow_symlinks=False):
                    continue  # a file beside the runs
                elif not is_run_id(name):
                    other[name] = NOT_A_RUN_ID
                else:
                    sig = signature(entry.path)
                    if sig is not None:
                        current[name] = sig
        return current, other

    def _refresh(self, progress: Callable[[int, int], None] | None) -> list[dict]:
        known = dict(self.db.execute("SELECT log_id, sig FROM runs"))
        current, skipped = self._scan()
        stale = [name for name, sig in current.items() if known.get(name) != sig]
        gone = [name for name in known if name not in current]
        updates = []
        for done, name in enumerate(stale, start=1):
            notes: dict[str, str] = {}
            try:
                row = read_run(os.path.join(self.parent, name), notes=notes)
            except Exception as exc:  # a corrupt or half-written run: count it, go on
                skipped[name] = f"{type(exc).__name__}: {_reason(exc)}"
                if name in known:
                    gone.append(name)  # its old row is no longer true
                continue
            row["log_id"] = int(name)
            row["log_dir"] = os.path.join(self.parent, name)
            blob = codec.encode(notes) if notes else None
            updates.append((name, current[name], encode_row(row), blob))
            if progress is not None and (done % 500 == 0 or done == len(stale)):
                progress(done, len(stale))
        if updates or gone:
            _waiting(lambda: self._write(updates, gone))
        rows = []
        for blob, notes_blob in self.db.execute("SELECT row, notes FROM runs"):
            rows.append(codec.decode(blob))
            if notes_blob is not None:
                skipped.update(codec.decode(notes_blob))
        self.skipped = skipped
        return rows

    def _write(self, updates: list[tuple], gone: list[str]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO runs (log_id, sig, row, notes) VALUES (?, ?, ?, ?)",
                updates,
            )
            self.db.executemany("DELETE FROM runs WHERE log_id = ?", [(g,) for g in gone])
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def _warn_skipped(self) -> None:
        """One warning for what could not be read; names that are no run id are only listed."""
        unread = sorted((k for k, v in self.skipped.items() if v != NOT_A_RUN_ID), key=_natural)
        if unread:
            names = ", ".join(unread[:10])
            more = "" if len(unread) <= 10 else f" and {len(unread) - 10} more"
            warnings.warn(
                f"skipped {len(unread)} unreadable run dir(s) or metric log(s) in "
                f"{self.parent}: {names}{more} (see Reader.skipped)",
                SkippedRunsWarning,
                stacklevel=4,
            )

    def close(self) -> None:
        self.db.close()


def _natural(name: str) -> tuple[int, str]:
    head = name.partition("/")[0]
    return (int(head), name) if is_run_id(head) else (1 << 62, name)
