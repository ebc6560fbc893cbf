"""The on-disk index of a parent log dir: one row per run with its flattened config, info and
metric summaries, refreshed incrementally (only runs whose files changed are read again).

SQLite (standard library) in WAL mode: many readers can open and refresh it at once, a
refresh is one transaction, and runs being written are never locked or touched. The index is
a cache: a corrupt one is rebuilt, and where it cannot be written (a read-only or full disk)
it moves to the user's cache dir, or to memory.
"""

from __future__ import annotations

import errno
import functools
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

import numpy as np

from mlxpy.errors import MlxpyError, MlxpyWarning
from mlxpy.reading.columns import Columns, Rebuild, concat, decode_column, encode_column
from mlxpy.rundir import codec, safe
from mlxpy.rundir.changes import read_changes
from mlxpy.rundir.flat import flatten
from mlxpy.rundir.info import read_record
from mlxpy.rundir.layout import (
    CONFIG_FILE,
    FORMAT_VERSION,
    INDEX_DIR,
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
from mlxpy.rundir.status import FINAL
from mlxpy.rundir.summary import read_summary, summarize

#: 4: metric summaries count one record per step; metadata files in the signature; notes
#: 5: summary fields; finished runs settle; the change journal; the frame kept as columns
SCHEMA_VERSION = 5
#: a finished run is re-checked at each open until its files are this old (seconds, by
#: their ctime); after that only when the change journal or the parent dir's listing says so
SETTLE_S = 5.0
#: rows read and written per transaction while building (bounded memory)
BATCH = 1000
#: how long opening or refreshing waits for other processes holding the index's write lock
LOCK_WAIT_S = 60.0
#: the reasons ``Reader.skipped`` gives for entries of the log dir that are not read
NOT_A_RUN_ID = "not a run id (run ids are decimal numbers: 1, 2, ...)"
SYMLINK = "symbolic link, not followed"
IN_MEMORY = ":memory:"


_FINAL = frozenset(status.value for status in FINAL)


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


def _own_index_dir(parent: Path) -> bool:
    """Whether the index may live in ``parent/.mlxpy-index/``: a real dir of ours that no
    one else can write, holding no link and no file of someone else's where the index and
    SQLite's ``-wal``/``-shm`` go. A shared log dir is untrusted: a planted link there would
    have SQLite write through it; the cache dir is used instead."""
    where = parent / INDEX_DIR
    where.mkdir(mode=0o755, exist_ok=True)
    me = os.geteuid()
    info = os.lstat(where)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != me or info.st_mode & 0o022:
        return False
    for suffix in ("", "-wal", "-shm"):
        try:
            part = os.lstat(f"{parent / INDEX_FILE}{suffix}")
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(part.st_mode) or part.st_uid != me:
            return False
    return os.access(where, os.W_OK)


def _places(parent: Path) -> Iterator[str]:
    """Where the index may live, best first: beside the runs, the cache dir, memory."""
    if os.access(parent, os.W_OK):
        try:
            if _own_index_dir(parent):
                yield str(parent / INDEX_FILE)
        except OSError:
            pass
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


def signature_and_newest(run_dir: str) -> tuple[str | None, float]:
    """The run's :func:`signature` and the newest change time (ctime) among its parts."""
    sig = signature(run_dir)
    if sig is None:
        return None, 0.0
    newest = max(int(part.rsplit(":", 2)[-2]) for part in sig.split("|")) / 1e9
    return sig, newest


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
    # -- tags (scale-cli): a list column, ``[]`` for none; a tag change touches the run's
    # record (mlxpy.rundir.tags.tell_readers), so the index reads the run again
    from mlxpy.rundir.tags import TAGS_COLUMN, read_tags

    row[TAGS_COLUMN] = read_tags(run_dir)
    # -- end tags
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
                    for table in ("runs", "bad", "gone", "state", "frame"):
                        db.execute(f"DROP TABLE IF EXISTS {table}")
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                # watch: re-checked at each open while NULL (a live run) or in the future
                db.execute(
                    "CREATE TABLE IF NOT EXISTS runs (log_id TEXT PRIMARY KEY, sig TEXT, "
                    "row BLOB, notes BLOB, watch REAL, gen INTEGER)"
                )
                db.execute("CREATE INDEX IF NOT EXISTS runs_gen ON runs (gen)")
                db.execute("CREATE INDEX IF NOT EXISTS runs_watch ON runs (watch)")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS bad (name TEXT PRIMARY KEY, sig TEXT, why TEXT)"
                )
                db.execute("CREATE TABLE IF NOT EXISTS gone (log_id TEXT PRIMARY KEY, gen INTEGER)")
                db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value)")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS frame "
                    "(name TEXT PRIMARY KEY, kind TEXT, codes BLOB, data BLOB)"
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
    def refresh(self, progress: Callable[[int, int], None] | None = None) -> Columns:
        """Bring the index up to date and return every run's columns."""
        try:
            columns = self._refresh(progress)
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
            columns = self._refresh(progress)
        self._warn_skipped()
        return columns

    def _listing(self) -> tuple[set[str], dict[str, str]]:
        """The run ids of the parent, and what is not read (names that are not run ids,
        symbolic links: never followed, whatever they point at)."""
        current: set[str] = set()
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
                    current.add(name)
        return current, other

    def _state(self) -> dict[str, Any]:
        return dict(self.db.execute("SELECT key, value FROM state"))

    def _refresh(self, progress: Callable[[int, int], None] | None) -> Columns:
        """Which runs to look at follows what changed: the parent dir's listing only when
        its mtime moved (new and deleted runs), the journal's new lines (finished runs that
        started again), live runs and runs changed in the last :data:`SETTLE_S` seconds."""
        now = time.time()
        state = self._state()
        st = os.stat(self.parent)
        parent_sig = f"{st.st_mtime_ns}:{st.st_ino}:{st.st_dev}"
        journaled, journal_mark = read_changes(self.parent, state.get("changes"))
        check_all = journaled is None or "gen" not in state
        if check_all or state.get("parent") != parent_sig:
            current, other = self._listing()
            known = dict(self.db.execute("SELECT log_id, sig FROM runs"))
            candidates: dict[str, str | None] = (
                dict.fromkeys(current)
                if check_all
                else {n: None for n in current if n not in known}
            )
            gone = [n for n in known if n not in current]
        else:
            current, known = None, {}
            other = codec.decode(state.get("other") or b"{}")
            candidates, gone = {}, []
        if not check_all:
            watched = self.db.execute(
                "SELECT log_id, sig FROM runs WHERE watch IS NULL OR watch > ?", (now,)
            )
            candidates.update(watched)
            for name in journaled or ():
                candidates.setdefault(name, None)
        if check_all:
            candidates = {n: known.get(n) for n in candidates}
        bad = {n: sig for n, sig, _ in self.db.execute("SELECT name, sig, why FROM bad")}
        candidates.update(dict.fromkeys((n for n in bad if n not in candidates), None))
        self._check(candidates, known, bad, current, gone, progress, now)
        # sure of the listing only once the parent's mtime is older than its clock's tick
        sure = now - st.st_mtime > 2.0
        if not sure and current is not None and time.time() - st.st_mtime > 2.0:
            # a long build that began right after the parent changed (the index's own dir
            # made, the last runs of a sweep): a second listing, begun more than a tick
            # after the mtime that has not moved since, sees everything the first may have
            # missed; the same listing means the first was whole
            again = os.stat(self.parent)
            if (again.st_mtime_ns, again.st_ino) == (st.st_mtime_ns, st.st_ino):
                sure = self._listing()[0] == current
        new_state = {
            "parent": parent_sig if sure else "",
            "other": codec.encode(other),
            "changes": journal_mark,
        }
        if any(state.get(k) != v for k, v in new_state.items()) or "gen" not in state:
            self._set_state(**new_state)  # a write transaction only for a change: opens read
        self.skipped = dict(other)
        for name, why in self.db.execute("SELECT name, why FROM bad"):
            self.skipped[name] = why
        for (notes_blob,) in self.db.execute("SELECT notes FROM runs WHERE notes IS NOT NULL"):
            self.skipped.update(codec.decode(notes_blob))
        return self._columns()

    def _check(
        self,
        candidates: dict[str, str | None],
        known: dict[str, str],
        bad: dict[str, str],
        current: set[str] | None,
        gone: list[str],
        progress: Callable[[int, int], None] | None,
        now: float,
    ) -> None:
        """Read again the candidates whose signature changed, a batch per transaction."""
        updates: list[tuple] = []
        failed: list[tuple[str, str, str]] = []
        fixed: list[str] = []
        stale = 0
        total = len(candidates)
        for done, (name, old) in enumerate(candidates.items(), start=1):
            path = os.path.join(self.parent, name)
            if current is not None and name not in current:
                continue
            sig, newest = signature_and_newest(path)
            if sig is None:  # deleted, or no metadata dir (yet): not a run
                if name in bad:
                    fixed.append(name)
                if current is None or name in known or old is not None:
                    gone.append(name)
                continue
            if name in bad:
                if bad[name] == sig:
                    continue
            elif sig == old:
                continue
            stale += 1
            notes: dict[str, str] = {}
            try:
                row = read_run(path, notes=notes)
            except Exception as exc:  # a corrupt or half-written run: count it, go on
                failed.append((name, sig, f"{type(exc).__name__}: {_reason(exc)}"))
                if old is not None or name in known:
                    gone.append(name)  # its old row is no longer true
            else:
                row["log_id"] = int(name)
                row["log_dir"] = path
                final = row.get("info.status") in _FINAL
                watch = newest + SETTLE_S if final else None
                blob = codec.encode(notes) if notes else None
                updates.append((name, sig, encode_row(row), blob, watch))
                if name in bad:
                    fixed.append(name)
            if len(updates) >= BATCH:
                _waiting(functools.partial(self._write, updates, [], [], []))
                updates = []
            if progress is not None and (done % 500 == 0 or done == total):
                progress(done, total)
        if updates or gone or failed or fixed:
            _waiting(lambda: self._write(updates, gone, failed, fixed))

    def _write(self, updates: list[tuple], gone: list[str], failed: list, fixed: list) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            (gen,) = self.db.execute(
                "SELECT coalesce((SELECT value FROM state WHERE key = 'gen'), 0) + 1"
            ).fetchone()
            self.db.executemany(
                "INSERT OR REPLACE INTO runs (log_id, sig, row, notes, watch, gen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(*u, gen) for u in updates],
            )
            self.db.executemany("DELETE FROM runs WHERE log_id = ?", [(g,) for g in gone])
            self.db.executemany(
                "INSERT OR REPLACE INTO gone (log_id, gen) VALUES (?, ?)", [(g, gen) for g in gone]
            )
            self.db.executemany("DELETE FROM bad WHERE name = ?", [(f,) for f in fixed])
            self.db.executemany(
                "INSERT OR REPLACE INTO bad (name, sig, why) VALUES (?, ?, ?)", failed
            )
            self.db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('gen', ?)", (gen,))
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def _set_state(self, **values: Any) -> None:
        def write() -> None:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", values.items()
                )
                self.db.execute("INSERT OR IGNORE INTO state (key, value) VALUES ('gen', 0)")
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

        _waiting(write)

    # -- the frame ------------------------------------------------------------------------
    def _columns(self) -> Columns:
        """Every run's columns: the kept frame, brought up to the rows written since (by this
        process or another), and kept again; built from the rows where it cannot be."""
        self.db.execute("BEGIN")  # one snapshot: the frame, the rows and the tombstones
        try:
            state = self._state()
            gen, frame_gen = int(state.get("gen", 0)), state.get("frame_gen")
            columns = self._load_frame(state) if frame_gen is not None else None
            if columns is not None and frame_gen != gen:
                added = [
                    codec.decode(row)
                    for (row,) in self.db.execute(
                        "SELECT row FROM runs WHERE gen > ?", (frame_gen,)
                    )
                ]
                removed = {
                    int(i)
                    for (i,) in self.db.execute(
                        "SELECT log_id FROM gone WHERE gen > ?", (frame_gen,)
                    )
                }
                try:
                    columns = columns.update(added, removed)
                except Rebuild:
                    columns = None
            if columns is None:
                columns = self._build_frame()
        finally:
            self.db.execute("COMMIT")
        if frame_gen != gen:
            _waiting(lambda: self._keep_frame(columns, gen))
        return columns

    def _build_frame(self) -> Columns:
        parts = []
        cursor = self.db.execute("SELECT row FROM runs")
        while True:
            batch = cursor.fetchmany(BATCH * 5)
            if not batch:
                break
            parts.append(Columns.from_rows([codec.decode(row) for (row,) in batch]))
        return concat(parts)

    def _load_frame(self, state: dict[str, Any]) -> Columns | None:
        n = state.get("frame_n")
        if type(n) is not int:
            return None
        data = {}
        ids = None
        try:
            for name, kind, codes, blob in self.db.execute("SELECT * FROM frame"):
                if name == "":
                    ids = np.frombuffer(blob, np.int64)
                else:
                    data[name] = decode_column(kind, codes, blob, n)
        except (ValueError, TypeError, IndexError):
            return None
        if ids is None or len(ids) != n:
            return None
        return Columns(ids, data)

    def _keep_frame(self, columns: Columns, gen: int) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            kept = self.db.execute("SELECT value FROM state WHERE key = 'frame_gen'").fetchone()
            if kept is None or kept[0] < gen:
                self.db.execute("DELETE FROM frame")
                self.db.execute(
                    "INSERT INTO frame VALUES ('', 'int64', x'', ?)", (columns.ids.tobytes(),)
                )
                self.db.executemany(
                    "INSERT INTO frame VALUES (?, ?, ?, ?)",
                    ((k, *encode_column(a, c)) for k, (a, c) in columns.data.items()),
                )
                self.db.executemany(
                    "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                    (("frame_gen", gen), ("frame_n", len(columns.ids))),
                )
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

    @property
    def generation(self) -> int | None:
        """The count of changes the index recorded (new, changed or deleted runs): equal
        between two opens when no run's files changed. None for an index in memory (one that
        could not be kept on disk), whose count restarts with each open."""
        if self.path == IN_MEMORY:
            return None
        return int(self._state().get("gen", 0))

    def signatures(self) -> dict[int, str]:
        """Each run's signature as the index last saw it (its files' sizes and times): what a
        cache of a run's derived data keys on, for every run at once, with no stat."""
        return {int(n): sig for n, sig in self.db.execute("SELECT log_id, sig FROM runs")}

    def close(self) -> None:
        self.db.close()


def _natural(name: str) -> tuple[int, str]:
    head = name.partition("/")[0]
    return (int(head), name) if is_run_id(head) else (1 << 62, name)
