"""A finished metric log's compact copy: ``metrics/.columns/<log>.bin``, its records as typed
columns, so that loading many runs' histories reads a few arrays per run instead of parsing
JSON lines (the log stays the record; the copy is a cache its writer keeps).

The writer writes it when it closes a log whose records are all alike: the same keys, each
key's values all floats (ints among them allowed), all ints within int64, or all bools, and
the steps, if any, strictly increasing (so one row per step is every record: nothing to
merge). Any other log has no copy, and readers parse it.

The format: one JSON line ``{"format": 1, "log_bytes": N, "rows": R, "keys": [[name,
"f8" | "i8" | "b1"], ...]}``, then each key's R values, little-endian, one key after another.
It is untrusted input: bounded, never through a link, only these three types (no objects, no
pickle), sizes checked against the header, and taken only while the log's size is
``log_bytes``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from mlxpy.rundir import codec, safe
from mlxpy.rundir.atomic import atomic_write_bytes
from mlxpy.rundir.layout import COLUMNS_DIR

FORMAT = 1
#: the header line's most bytes (a log of very many keys has no copy)
MAX_HEADER_BYTES = 64 * 1024
_DTYPES = {"f8": "<f8", "i8": "<i8", "b1": "|b1"}
_INT64 = (-(2**63), 2**63 - 1)


_NUMPY_DTYPES: dict[str, Any] = {}


def _numpy_dtypes() -> dict[str, Any]:
    if not _NUMPY_DTYPES:
        import numpy as np

        _NUMPY_DTYPES.update({code: np.dtype(spec) for code, spec in _DTYPES.items()})
    return _NUMPY_DTYPES


def copy_path(log_path: Path) -> Path:
    """``metrics/.columns/<log>.bin`` beside ``metrics/<log>.json``."""
    return log_path.parent / COLUMNS_DIR / (log_path.name[: -len(".json")] + ".bin")


def encode_copy(records: list[dict[str, Any]], log_bytes: int) -> bytes | None:
    """The copy of a whole log's ``records``, or None where the log is not one to copy."""
    import numpy as np

    if not records:
        return None
    first = records[0].keys()
    if not all(r.keys() == first for r in records):
        return None
    names = list(first)
    header_keys: list[list[str]] = []
    arrays: list[bytes] = []
    for name in names:
        values = [r[name] for r in records]
        kinds = set(map(type, values))
        if kinds == {bool}:
            code = "b1"
        elif kinds == {int}:
            if min(values) < _INT64[0] or max(values) > _INT64[1]:
                return None
            code = "i8"
        elif kinds <= {int, float}:
            code = "f8"
        else:
            return None  # strings, None, mixed with bools: readers type those themselves
        array = np.array(values, dtype=_DTYPES[code])
        if name == "step" and array.size > 1 and not bool((np.diff(array) > 0).all()):
            return None  # a step logged twice or going back: rows to merge or supersede
        header_keys.append([name, code])
        arrays.append(array.tobytes())
    header = codec.encode(
        {"format": FORMAT, "log_bytes": log_bytes, "rows": len(records), "keys": header_keys}
    )
    if len(header) > MAX_HEADER_BYTES:
        return None
    return header + b"\n" + b"".join(arrays)


def write_copy(log_path: Path, records: list[dict[str, Any]], log_bytes: int) -> None:
    """Write the log's copy, or remove a stale one where there is none to write; a failure
    (a full disk) leaves no copy: readers parse the log."""
    where = copy_path(log_path)
    try:
        blob = encode_copy(records, log_bytes)
        if blob is None or len(blob) > safe.MAX_METRICS_BYTES:
            where.unlink(missing_ok=True)
            return
        where.parent.mkdir(exist_ok=True)
        atomic_write_bytes(where, blob, fsync=False)
    except OSError:
        try:
            where.unlink(missing_ok=True)
        except OSError:
            pass


def read_copy(log_path: str | Path, root: str | Path) -> dict[str, Any] | None:
    """The log's columns from its copy (numpy arrays, in the log's key order), or None where
    there is no copy that covers the log as it is now; ``root`` is the run dir (nothing on
    the way may be a link). Plain ``os`` calls: the Reader calls this for every run loaded."""
    import numpy as np

    log = os.fspath(log_path)
    folder = os.path.join(os.path.dirname(log), COLUMNS_DIR)
    copy = os.path.join(folder, os.path.basename(log)[: -len(".json")] + ".bin")
    try:
        info = os.lstat(log)
        if not stat.S_ISREG(info.st_mode):
            return None
        safe.check_inside(root, folder)  # type: ignore[arg-type]  # strs: os.fspath
        fd = os.open(copy, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (OSError, safe.UnsafePathError):
        return None
    try:
        held = os.fstat(fd)
        if not stat.S_ISREG(held.st_mode):
            return None
        # the header first, the body only once its size is the one the header makes: a
        # planted copy (a sparse file of gigabytes) is never read whole
        head = os.read(fd, MAX_HEADER_BYTES)
        cut = head.find(b"\n")
        if cut < 0:
            return None
        try:
            header = codec.decode(head[:cut])
        except ValueError:
            return None
        if type(header) is not dict or header.get("format") != FORMAT:
            return None
        rows, keys = header.get("rows"), header.get("keys")
        if header.get("log_bytes") != info.st_size or type(rows) is not int or rows < 0:
            return None
        if type(keys) is not list or not keys or len(keys) > MAX_HEADER_BYTES:
            return None
        # every record is a line of at least a few bytes per key: no more rows than that
        if rows > info.st_size // (2 * len(keys)) or held.st_size > 8 * rows * len(keys) + cut + 1:
            return None
        blob = (
            head + os.read(fd, held.st_size - len(head) + 1) if held.st_size > len(head) else head
        )
        if len(blob) != held.st_size:
            return None  # rewritten while read
    except OSError:
        return None
    finally:
        os.close(fd)
    out: dict[str, Any] = {}
    offset = cut + 1
    dtypes = _numpy_dtypes()
    for entry in keys:
        if type(entry) is not list or len(entry) != 2:
            return None
        name, code = entry
        if type(name) is not str or code not in dtypes or name in out:
            return None
        dtype = dtypes[code]
        end = offset + rows * dtype.itemsize
        if end > len(blob):
            return None
        out[name] = np.frombuffer(blob, dtype=dtype, count=rows, offset=offset)
        offset = end
    if offset != len(blob):
        return None
    return out
