"""Metric logs: one JSON object a line in ``metrics/<log_name>.json``, append-only.

The one writer buffers records in memory and writes them with one ``write`` call when
``flush_every`` records are pending, when the run's background ticker asks, at each
checkpoint and when the run ends, so a ``kill -9`` loses at most the unflushed interval. The
one reader tolerates what a killed writer or a hostile directory leaves: torn or unreadable
lines are skipped and counted, huge lines are skipped without being held in memory.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from mlxpy.errors import MlxpyWarning
from mlxpy.rundir import codec, safe
from mlxpy.rundir.atomic import atomic_write_bytes, atomic_write_text
from mlxpy.rundir.columnar import copy_path, write_copy
from mlxpy.rundir.layout import KEYS_DIR, METRICS_SUFFIX, RunDir, is_run_id
from mlxpy.rundir.summary import MAX_SUMMARY_BYTES, Fold, summary_path

_PLAIN = frozenset({int, float, bool, str, type(None)})
#: a whole-string match: ``\Z``, since ``$`` would accept a name ending in a newline
_LOG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")
#: names become file names; most file systems take 255 bytes
MAX_NAME_LENGTH = 200
_READ_CHUNK = 8 * 1024 * 1024
#: the writer folds at most this much of its log into the summary at close (about a second);
#: a longer log has no summary and readers parse it
MAX_SUMMARY_FOLD_BYTES = 32 * 1024 * 1024
#: a log whose writes keep failing holds at most this much in memory before log_metrics raises
MAX_BUFFER_BYTES = 256 * 1024 * 1024


#: the key of each record's wall-clock time, seconds since the Unix epoch (``time.time()``);
#: written by the writer, so a metric may not be named so
TIME_KEY = "_time"
#: the endings of the Reader's ``<log>.<key>.last`` columns of keys that are not results (the
#: step, the time): tables of final metrics leave them out
NOT_RESULTS_LAST = ("step.last", f".{TIME_KEY}.last")
_now = time.time
_dumps = orjson.dumps
_LINE = orjson.OPT_APPEND_NEWLINE


class TornLineWarning(MlxpyWarning):
    """A metric log has a partial or unreadable line (its writer was killed); it is skipped."""


def check_log_name(log_name: Any, what: str = "log name") -> str:
    """Log names become file names: no separators, no ``..``, no hidden files, no newline."""
    if not isinstance(log_name, str) or not _LOG_NAME.match(log_name) or ".." in log_name:
        raise ValueError(
            f"invalid {what} {log_name!r}: use letters, digits, '_', '-' and '.', starting with "
            "a letter, digit or '_', without '..' or path separators"
        )
    if len(log_name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"invalid {what}: {len(log_name)} characters, more than {MAX_NAME_LENGTH}; "
            "use a shorter name"
        )
    return log_name


def to_scalar(key: str, value: Any) -> Any:
    """Convert numpy scalars, 0-d arrays and 0-d tensors to Python scalars, without importing
    numpy or torch; anything else that is not a scalar is a TypeError naming the key."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, (bool, int, float, str)):  # subclasses, e.g. numpy.float64
        for plain in (bool, int, float, str):
            if isinstance(value, plain):
                return plain(value)
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        converted = value.item()
        if type(converted) in _PLAIN:
            return converted
    raise TypeError(
        f"metric {key!r} has a value of type {type(value).__name__}: log_metrics takes int, "
        "float, bool, str, None, numpy scalars and 0-d arrays or tensors"
    )


def _refuse_reserved(metrics: dict[str, Any], step: Any) -> None:
    """Raise for a record whose keys collide with the writer's own (``step``, ``_time``)."""
    if TIME_KEY in metrics:
        raise ValueError(
            f"log_metrics got a metric named {TIME_KEY!r}: that key is the record's wall-clock "
            "time, which mlxpy writes itself; rename the metric"
        )
    if step is not None and "step" in metrics:
        raise ValueError(
            f"log_metrics got step={step!r} and a metric named 'step' ({metrics['step']!r}); "
            "pass the step once, as the argument or as the key"
        )


def _checked_line(record: dict[str, Any]) -> bytes:
    """The record's line the careful way: every value checked and converted (a TypeError
    naming the key otherwise), non-finite numbers written as ``NaN`` / ``Infinity``."""
    record = {k: to_scalar(k, v) for k, v in record.items()}
    bad = [k for k in record if type(k) is not str]
    if bad:
        raise TypeError(f"metric names must be strings, got {bad[0]!r}")
    try:
        return codec.encode_record(record)
    except TypeError as exc:  # an int beyond 64 bits, which JSON lines here cannot hold
        raise TypeError(f"a metric value cannot be written: {exc}") from None


class MetricsWriter:
    """The buffered writer of one metric log."""

    def __init__(self, path: Path, keys_path: Path, log_name: str, flush_every: int) -> None:
        self.path = path
        self.keys_path = keys_path
        self.log_name = log_name
        self.flush_every = max(1, int(flush_every))
        self._fd = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
        )
        # A bytearray, not a list of lines: keeping many small bytes objects alive is
        # 10x slower here (allocator churn) than copying each line into one buffer.
        self._buffer = bytearray()
        self._pending = 0
        #: after a failed write, ``write`` tries again only this many records later
        self._retry_at = self.flush_every
        self._lock = threading.Lock()
        self._keys: set[str] = set(_read_keys(self.keys_path))
        self._keys_stale = False
        #: the last write's error while records wait for a retry; None once they are on disk
        self.error: OSError | None = None
        self._fence_torn_line()
        self._summary_path = summary_path(self.path)
        #: the fold the summary starts from and the log offset it covers: the whole log, a
        #: resumed one too (its copy then covers every attempt); None once a write failed or
        #: was cut short (part of it may be on disk: readers parse the log)
        self._base: tuple[Fold, int] | None = (Fold(), 0)
        #: the log's size when its summary was last written (close writes it again if not)
        self._summarized: int | None = None

    def _fence_torn_line(self) -> None:
        """A resumed log whose writer was killed mid-line ends without a newline: end that
        fragment first, so the next record is a line of its own and reads back."""
        size = os.fstat(self._fd).st_size
        if size:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if os.pread(fd, 1, size - 1) != b"\n":
                    self._buffer += b"\n"
            finally:
                os.close(fd)

    def finish(self) -> None:
        """Flush, and write the log's summary and compact copy: the run is about to record
        its final status, and a reader that sees it should find them (the descriptor stays
        open; :meth:`close` writes them again only if the log grew meanwhile)."""
        with self._lock:
            self._flush_locked()
            self._write_summary()

    def _write_summary(self) -> None:
        """Fold the whole log and write its summary and compact copy, at the run's end (or
        close): the hot path stays free of it, and readers parse a live run's logs. A line
        that would not read back the same way (torn, too long) means neither: readers parse
        the log."""
        if self._base is None:
            return
        fold, start = Fold(), 0
        try:
            size = os.fstat(self._fd).st_size
            if size - start > MAX_SUMMARY_FOLD_BYTES or size > safe.MAX_METRICS_BYTES:
                raise ValueError("too much to fold at close")  # readers parse it, or skip it
            data = b""
            if size > start:  # the writer's descriptor is write-only
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    data = os.pread(fd, size - start, start)
                finally:
                    os.close(fd)
            lines = data.split(b"\n")
            if len(data) != size - start or lines.pop() != b"":
                raise ValueError("the log changed meanwhile")
            if any(len(line) > safe.MAX_LINE_BYTES for line in lines):
                raise ValueError("a line too long to read back")
            records = codec.decode(b"[" + b",".join(lines) + b"]") if lines else []
            if not all(type(r) is dict for r in records):
                raise ValueError("a line that is not a record")
            for record in records:
                fold.add(record)
            blob = fold.to_json(size)
            if not fold.valid or len(blob) > MAX_SUMMARY_BYTES:
                raise ValueError("no exact summary")
            self._summary_path.parent.mkdir(exist_ok=True)
            atomic_write_bytes(self._summary_path, blob, fsync=False)
            write_copy(self.path, records, size)  # its columns too, for history readers
            self._summarized = size
        except (ValueError, OSError):  # a full disk among them: the summary is only a hint
            self._base = None  # not tried again at close
            for stale in (self._summary_path, copy_path(self.path)):
                try:
                    os.unlink(stale)  # a stale one would not be taken; tidier gone
                except OSError:
                    pass

    # -- the hot path (log_metrics): see docs/run-directory.md, "Metric logs" ----------------
    def write(self, metrics: dict[str, Any], step: Any = None) -> None:
        """Queue one record.

        Kept lean, it is every ``log_metrics`` call: the record is built once, with the step
        first and the wall-clock time (:data:`TIME_KEY`) last; a key ``step`` or ``_time``
        colliding with those shows as a record shorter than expected. Plain values (one
        C-level type check of them all) go straight to orjson; anything else (numpy scalars,
        0-d arrays and tensors, and what orjson would write natively but is no scalar:
        Enums, UUIDs, fragments) and non-finite values (written as ``null``) take the
        checked path, :func:`_checked_line`. Appending to the buffer takes no lock:
        ``bytearray +=`` and the flush's deletion of what it wrote (a prefix) are each one
        operation under the GIL, and the flush writes a copy of the buffer, never the buffer
        itself (resizing it while a write holds it would fail). The lock orders flushes and
        key-file writes."""
        if type(metrics) is not dict and not isinstance(metrics, dict):
            raise TypeError(f"log_metrics takes a dict of metrics, got {type(metrics).__name__}")
        if step is None:
            record = {**metrics, TIME_KEY: _now()}
            if len(record) == len(metrics):
                _refuse_reserved(metrics, step)
        else:
            record = {"step": step, **metrics, TIME_KEY: _now()}
            if len(record) != len(metrics) + 2:
                _refuse_reserved(metrics, step)
        if type(step) not in _PLAIN or not _PLAIN.issuperset(map(type, metrics.values())):
            line = _checked_line(record)  # orjson writes Enums, UUIDs, fragments natively
        else:
            try:
                line = _dumps(record, option=_LINE)
            except TypeError:  # a key that is not a str, an int beyond 64 bits
                line = _checked_line(record)
            if line.find(b"null") >= 0:  # None, or a NaN / infinity orjson wrote as null
                line = _checked_line(record)
        if not self._keys.issuperset(record):
            with self._lock:
                self._add_keys(record)
        self._buffer += line
        self._pending += 1
        if self._pending >= self._retry_at:
            with self._lock:
                try:
                    self._flush_locked()
                except OSError:
                    # kept: the logger's ticker retries and reports it; only a buffer grown
                    # past what memory should hold makes log_metrics fail
                    if len(self._buffer) > MAX_BUFFER_BYTES:
                        raise
                    self._retry_at = self._pending + self.flush_every

    # -- end of the hot path ----------------------------------------------------------------

    def _add_keys(self, record: dict[str, Any]) -> None:
        """Record the log's key set for readers; rewritten only when a new key appears. The
        key file is a hint: a failed write (full disk) is retried after the next flush."""
        self._keys.update(record)
        self._write_keys()

    def _write_keys(self) -> None:
        try:
            self.keys_path.parent.mkdir(exist_ok=True)
            text = codec.encode(sorted(self._keys)).decode()
            atomic_write_text(self.keys_path, text, fsync=False)
            self._keys_stale = False
        except OSError:
            self._keys_stale = True

    @property
    def pending(self) -> int:
        """Records buffered and not yet (wholly) on disk."""
        return self._pending

    def flush(self) -> None:
        """Write every buffered record; raises the write's OSError, the records kept."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        """Write the buffer. On an error (a full disk) what was not written stays buffered,
        starting exactly where the write stopped, and the error propagates: a retry later
        writes it once, never dropped, never glued to a torn fragment."""
        deferred = _defer_signals()
        try:
            while self._buffer:
                start, unwritten = os.fstat(self._fd).st_size, len(self._buffer)
                try:
                    # a copy: log_metrics may append meanwhile (from another thread)
                    chunk = bytes(self._buffer)
                    written = os.write(self._fd, chunk)
                    del self._buffer[:written]
                except OSError as exc:  # nothing of this call was written: the tail is intact
                    self._base = None  # part of it may be on disk: readers parse the log
                    self.error = exc
                    self._pending = self._buffer.count(b"\n")
                    raise
                except BaseException:  # a handler raised around the write: trim what is on disk
                    self._base = None
                    self._trim_to_disk(start, unwritten)
                    raise
        finally:
            if deferred is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, deferred)
        self._pending = self._buffer.count(b"\n")  # appended since the last write: 0, mostly
        self._retry_at = self.flush_every
        self.error = None
        if self._keys_stale:
            self._write_keys()

    def _trim_to_disk(self, start: int, unwritten: int) -> None:
        """Drop from the buffer exactly what reached the file since ``start`` (its size then,
        with ``unwritten`` bytes buffered). The signal mask holds handlers back only when the
        kernel gives the signal to this thread: with other threads (a data loader's), the
        handler may still run between the write and the trim, and must not cause a rewrite."""
        on_disk = os.fstat(self._fd).st_size - start
        trimmed = unwritten - len(self._buffer)
        if on_disk > trimmed:
            del self._buffer[: on_disk - trimmed]

    def close(self, flush: bool = True) -> None:
        """Flush and close; ``flush=False`` drops what is buffered (the run already recorded
        that it could not be written, and the room left is for that record)."""
        with self._lock:
            try:
                if flush:
                    self._flush_locked()
                    if self._summarized != os.fstat(self._fd).st_size:
                        self._write_summary()
            finally:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1


#: signals whose Python handler raises (SIGTERM, a scheduler's warning): held back while a
#: write is under way in the main thread, so a handler never runs between a write and the
#: buffer's trim (the written bytes would be written again)
_DEFERRED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2}


def block_deferred_signals() -> None:
    """Called first in the project's own background threads: the kernel then gives these
    signals to the main thread, whose mask holds them back during a write."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)


def _defer_signals() -> set[int | signal.Signals] | None:
    if threading.current_thread() is not threading.main_thread():
        return None  # Python runs signal handlers in the main thread only
    return signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)


def _read_keys(path: Path) -> list[str]:
    try:
        keys = codec.decode(safe.read_bytes(path))
    except (OSError, ValueError):
        return []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


Lines = list[bytes | None]


def iter_lines(fd: int) -> Iterator[tuple[Lines, bool]]:
    """Blocks of complete lines of an open file, with whether the block is a last line
    without its newline (a killed writer's fragment). A line longer than ``MAX_LINE_BYTES``
    comes as ``None`` and is never kept whole in memory."""
    carry = b""
    skipping = False
    while True:
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            break
        if skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                continue
            chunk, skipping = chunk[cut + 1 :], False
            yield [None], False
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
        else:
            lines: Lines = data[:cut].split(b"\n")  # type: ignore[assignment]
            if max(map(len, lines)) > safe.MAX_LINE_BYTES:  # type: ignore[arg-type]
                lines = [None if len(x) > safe.MAX_LINE_BYTES else x for x in lines]  # type: ignore[arg-type]
            yield lines, False
            carry = data[cut + 1 :]
        if len(carry) > safe.MAX_LINE_BYTES:
            carry, skipping = b"", True
    if skipping:
        yield [None], True
    elif carry:
        yield [carry], True


def read_records(
    path: Path, root: Path | None = None, on_bad: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Every record of a metric log. Torn, unreadable, non-object or overlong lines are
    skipped; ``on_bad`` hears of each. Raises OSError / UnsafePathError for a missing, linked,
    non-regular or oversized file."""
    fd = safe.open_regular(path, safe.MAX_METRICS_BYTES, root)
    records: list[dict[str, Any]] = []
    number = 0
    try:
        whole = _read_small(fd)
        if whole is not None:
            return whole
        for lines, torn in iter_lines(fd):
            if not torn and len(lines) > 1 and None not in lines:
                try:  # fast path: the whole block as one JSON array
                    parsed = codec.decode(b"[" + b",".join(lines) + b"]")  # type: ignore[arg-type]
                except ValueError:
                    parsed = None
                if parsed is not None and all(type(r) is dict for r in parsed):
                    records.extend(parsed)
                    number += len(lines)
                    continue
            for line in lines:
                number += 1
                if line is None:
                    if on_bad:
                        on_bad(f"{path}: skipped line {number}, longer than {safe.MAX_LINE_BYTES}")
                    continue
                if not line.strip():
                    continue
                try:
                    record = codec.decode(line)
                except ValueError:
                    record = None
                if type(record) is dict:
                    records.append(record)
                elif on_bad:
                    what = "a torn last line" if torn else "an unreadable line"
                    on_bad(f"{path}: skipped {what} (line {number})")
    finally:
        os.close(fd)
    return records


#: a log up to this size is decoded whole, as one JSON array (never above a line's limit)
WHOLE_FILE_BYTES = 1024 * 1024


def _read_small(fd: int) -> list[dict[str, Any]] | None:
    """The records of a whole log no longer than one line may be (so no line is overlong),
    every line complete and an object, decoded as one JSON array; None otherwise (the file
    offset back at 0, for the line-by-line reader)."""
    size = os.fstat(fd).st_size
    if not 0 < size <= min(WHOLE_FILE_BYTES, safe.MAX_LINE_BYTES):
        return None
    data = os.read(fd, size)
    if data.endswith(b"\n") and len(data) == size:
        try:
            parsed = codec.decode(b"[" + data[:-1].replace(b"\n", b",") + b"]")
        except ValueError:
            parsed = None
        if parsed is not None and set(map(type, parsed)) == {dict}:
            return parsed
    os.lseek(fd, 0, os.SEEK_SET)
    return None


#: a reader reads at most this many ranks' logs of one run (a hostile ``world_size``)
MAX_RANKS = 16384


def rank_logs(run: RunDir, log_name: str, world_size: int = MAX_RANKS) -> list[tuple[int, Path]]:
    """Where the ranks other than 0 of a distributed run keep their own log ``log_name``
    (``ranks/<k>/metrics/<log>.json``), by rank; a rank that kept none is listed too (reading
    its log raises FileNotFoundError). ``ranks/`` is listed without following a link (a link
    raises OSError); names that are not canonical rank numbers are left out, and a link below
    is refused when the log is read (``read_records(..., root=run.root)``). Only ranks below
    ``world_size`` (the run's info; at most :data:`MAX_RANKS`) are listed."""
    safe.check_inside(run.root, run.ranks)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(run.ranks, flags)
    except FileNotFoundError:
        return []
    try:
        names = os.listdir(fd)
    finally:
        os.close(fd)
    limit = min(world_size, MAX_RANKS)  # ranks the run says it had, and no more
    ranks = sorted(int(n) for n in names if is_run_id(n) and n != "0" and int(n) < limit)
    return [(rank, run.rank(rank).metrics_file(log_name)) for rank in ranks]


def latest_per_step(records: list[dict[str, Any]], step: str = "step") -> list[dict[str, Any]]:
    """One row per step, from the latest attempt that logged it.

    A run resumed from a checkpoint logs again the steps logged after that checkpoint; both
    attempts stay on disk, and this is what readers show by default. A new attempt starts
    where the step goes back. Records of one attempt at the same step (``loss`` then ``acc``
    at step 5) are merged into one row, later keys winning. Records without ``step`` are all
    kept.
    """
    steps = [r[step] for r in records if step in r]
    try:
        if len(set(steps)) == len(steps):  # no step twice: nothing to merge or drop
            return records
    except TypeError:  # an unhashable step value: leave the log as it is
        return records
    out: list[dict[str, Any] | None] = []
    where: dict[Any, tuple[int, int]] = {}  # step -> (attempt, row in out)
    attempt, previous = 0, None
    for record in records:
        if step not in record:
            out.append(record)
            continue
        value = record[step]
        try:
            if previous is not None and value < previous:
                attempt += 1
        except TypeError:  # steps of mixed types: no order to read attempts from
            pass
        previous = value
        seen = where.get(value)
        if seen is not None and seen[0] == attempt:
            row = out[seen[1]]
            out[seen[1]] = {**row, **record} if row is not None else record
            continue
        if seen is not None:
            out[seen[1]] = None  # an earlier attempt's row: superseded
        where[value] = (attempt, len(out))
        out.append(record)
    return [r for r in out if r is not None]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read a metric log; each skipped line is a :class:`TornLineWarning`."""
    return read_records(
        Path(path), on_bad=lambda message: warnings.warn(message, TornLineWarning, 2)
    )


__all__ = [
    "METRICS_SUFFIX",
    "KEYS_DIR",
    "MetricsWriter",
    "TIME_KEY",
    "TornLineWarning",
    "check_log_name",
    "is_disk_full",
    "latest_per_step",
    "read_metrics",
    "read_records",
    "to_scalar",
]
