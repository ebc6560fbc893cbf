"""Touching files of run directories that someone else may have written.

A lab's shared logs dir is untrusted input: a planted symlink must not make a writer write, or
a reader read, outside the run dir; a FIFO or device must not hang a reader; a huge file must
not be read into memory. Every read and write of a run's files goes through these checks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mlxpy.errors import LogDirError

#: metadata files (info, config, options, run.json) larger than this are not read
MAX_METADATA_BYTES = 16 * 1024 * 1024


#: a metric log larger than this is skipped whole (``MLXPY_MAX_METRICS_BYTES`` changes it)
def _bytes_from_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:  # a typo in the environment must not break `import mlxpy`
        return default


MAX_METRICS_BYTES = _bytes_from_env("MLXPY_MAX_METRICS_BYTES", 4 * 1024**3)
#: one metric record (one line) longer than this is skipped, without holding it in memory
MAX_LINE_BYTES = 1024 * 1024


class UnsafePathError(LogDirError, OSError):
    """A path inside a run dir is a symlink, or not a regular file, or too large."""


def check_inside(root: Path, path: Path) -> None:
    """Refuse ``path`` unless every component below ``root`` is a real directory (or absent),
    never a symlink; so nothing written or read under ``root`` lands outside it. (String
    operations, not pathlib: the Reader calls this for every file of every run.)"""
    root_text, path_text = os.fspath(root).rstrip(os.sep) or os.sep, os.fspath(path)
    if path_text == root_text:
        return
    prefix = root_text if root_text.endswith(os.sep) else root_text + os.sep
    if not path_text.startswith(prefix):
        raise UnsafePathError(f"{path} is not inside the run directory {root}")
    current = root_text.rstrip(os.sep)
    for part in path_text[len(prefix) :].split(os.sep):
        if not part or part == ".":
            continue
        if part == "..":
            raise UnsafePathError(f"{path} leaves the run directory {root}")
        current = f"{current}{os.sep}{part}"
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return  # what does not exist yet is created by us, as a real dir or file
        if stat.S_ISLNK(mode):
            raise UnsafePathError(
                f"{current} is a symbolic link; mlxpy does not follow links inside a run "
                "directory (remove it)"
            )


def open_regular(path: Path, limit: int, root: Path | None = None) -> int:
    """A read-only fd on ``path`` if it is a regular file of at most ``limit`` bytes (checked
    after opening, on the file opened: no race); never blocks on a FIFO or follows a link."""
    if root is not None:
        check_inside(root, path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePathError(f"{path} is not a regular file; skipped")
        if info.st_size > limit:
            raise UnsafePathError(
                f"{path} has {info.st_size} bytes, more than the {limit} a reader takes; skipped"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: Path, limit: int = MAX_METADATA_BYTES, root: Path | None = None) -> bytes:
    """The whole of a small file, within ``limit``; raises OSError/UnsafePathError."""
    fd = open_regular(path, limit, root)
    try:
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining <= 0:  # grew past the limit while we read
            raise UnsafePathError(f"{path} is larger than {limit} bytes; skipped")
        return b"".join(chunks)
    finally:
        os.close(fd)
