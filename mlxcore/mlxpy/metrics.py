"""Buffered, append-only metric logs: one JSON object a line in ``metrics/<log_name>.json``.

Records are kept in memory and written with one ``write`` call when ``flush_every`` records
are pending, when the run's background ticker asks (every ``flush_interval_s``), at each
checkpoint and when the run ends, so a ``kill -9`` loses at most the unflushed interval.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import orjson

from mlxpy.errors import MlxpyWarning

METRICS_DIR = "metrics"
KEYS_DIR = ".keys"
_PLAIN = frozenset({int, float, bool, str, type(None)})
_LOG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE


class TornLineWarning(MlxpyWarning):
    """A metric log ends with a partial line (its writer was killed); the line is skipped."""


def check_log_name(log_name: Any, what: str = "log name") -> str:
    """Log names become file names: no separators, no ``..``, no hidden files."""
    if not isinstance(log_name, str) or not _LOG_NAME.match(log_name) or ".." in log_name:
        raise ValueError(
            f"invalid {what} {log_name!r}: use letters, digits, '_', '-' and '.', starting with "
            "a letter, digit or '_', without '..' or path separators"
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


def _keep_non_finite(record: dict[str, Any], line: bytes) -> bytes:
    """orjson writes NaN and infinities as null; Python's json keeps them (NaN, Infinity)."""
    if any(isinstance(v, float) and not math.isfinite(v) for v in record.values()):
        return (json.dumps(record, allow_nan=True, separators=(",", ":")) + "\n").encode()
    return line


class MetricsWriter:
    """The buffered writer of one metric log."""

    def __init__(self, metrics_dir: Path, log_name: str, flush_every: int) -> None:
        self.path = metrics_dir / f"{log_name}.json"
        self.keys_path = metrics_dir / KEYS_DIR / f"{log_name}.json"
        self.log_name = log_name
        self.flush_every = max(1, int(flush_every))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        # A bytearray, not a list of lines: keeping many small bytes objects alive is
        # 10x slower here (allocator churn) than copying each line into one buffer.
        self._buffer = bytearray()
        self._pending = 0
        self._lock = threading.Lock()
        self._keys: set[str] = set(_read_keys(self.keys_path))

    def write(self, metrics: dict[str, Any], step: Any = None) -> dict[str, Any]:
        """Queue one record; return it as stored (for hooks)."""
        if not isinstance(metrics, dict):
            raise TypeError(f"log_metrics takes a dict of metrics, got {type(metrics).__name__}")
        record = metrics if step is None else {"step": step, **metrics}
        for value in record.values():
            if type(value) not in _PLAIN:
                record = {k: to_scalar(k, v) for k, v in record.items()}
                break
        try:
            line = orjson.dumps(record, option=_DUMPS_OPTIONS)
        except TypeError as exc:  # a non-str key
            raise TypeError(f"metric names must be strings: {exc}") from None
        if b"null" in line:
            line = _keep_non_finite(record, line)
        if not self._keys.issuperset(record):
            self._add_keys(record)
        with self._lock:
            self._buffer += line
            self._pending += 1
            if self._pending >= self.flush_every:
                self._flush_locked()
        return record

    def _add_keys(self, record: dict[str, Any]) -> None:
        """Record the log's key set for readers; rewritten only when a new key appears."""
        from mlxpy._files import atomic_write_text

        self._keys.update(record)
        self.keys_path.parent.mkdir(exist_ok=True)
        atomic_write_text(self.keys_path, json.dumps(sorted(self._keys)), fsync=False)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._pending = 0
            view = memoryview(data)
            while view:  # one write in practice; loop for partial writes
                view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        with self._lock:
            self._flush_locked()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _read_keys(path: Path) -> list[str]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read a metric log; a torn last line (a killed writer) is skipped with a warning."""
    records = []
    with open(path, "rb") as handle:
        lines = handle.read().split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if number >= len(lines) - 1:
                warnings.warn(
                    f"{path}: skipped a torn last line (line {number})", TornLineWarning, 2
                )
            else:
                warnings.warn(f"{path}: skipped an unreadable line {number}", TornLineWarning, 2)
    return records
