"""A run's captured output, for ``mlxpy tail``: which files hold it, their last lines, and
following them while the run lives. Reads are bounded (the end of a file, never all of a large
one) and never follow a link or block on a FIFO (:mod:`mlxpy.rundir.safe`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mlxpy.rundir import claim, safe
from mlxpy.rundir.info import read_info
from mlxpy.rundir.layout import (
    JOB_STDERR,
    JOB_STDOUT,
    STREAM_STDERR,
    STREAM_STDOUT,
    RunDir,
    rank_stream,
)
from mlxpy.rundir.status import RunStatus

#: how much of a file's end ``tail`` reads to find its last lines
TAIL_BYTES = 1024 * 1024
#: most ranks whose output is looked for (a distributed run's ``world_size`` is data)
MAX_RANKS = 1024
#: how often ``follow`` looks for new output
POLL_S = 0.2


def output_files(run: RunDir, streams: tuple[str, ...] = ("stdout", "stderr")) -> list[Path]:
    """The run's output files that exist, in the order shown: the scheduler's job output,
    then the task's own (``log.stdout``), then each rank's (``log.rank<k>.stdout``)."""
    names: list[str] = []
    for stream in streams:
        names.append(JOB_STDOUT if stream == "stdout" else JOB_STDERR)
    for stream in streams:
        names.append(STREAM_STDOUT if stream == "stdout" else STREAM_STDERR)
    world = (read_info(run.root) or {}).get("world_size")
    ranks = world if type(world) is int and 1 < world <= MAX_RANKS else 0
    for rank in range(ranks):
        for stream in streams:
            names.append(rank_stream(STREAM_STDOUT if stream == "stdout" else STREAM_STDERR, rank))
    return [run.root / name for name in names if os.path.lexists(run.root / name)]


def read_tail(path: Path, root: Path, lines: int) -> tuple[bytes, int]:
    """The last ``lines`` lines of ``path`` (from at most its last :data:`TAIL_BYTES`), and
    the offset where the file ended."""
    fd = safe.open_regular(path, 1 << 62, root)
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_BYTES)
        data = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    if lines <= 0:
        return b"", start + len(data)
    parts = data.splitlines(keepends=True)
    if start > 0 and parts:
        parts = parts[1:]  # the first one is cut
    return b"".join(parts[-lines:]), start + len(data)


def read_from(path: Path, root: Path, offset: int, limit: int = TAIL_BYTES) -> tuple[bytes, int]:
    """What was appended to ``path`` after ``offset`` (at most ``limit`` bytes at a time)."""
    try:
        fd = safe.open_regular(path, 1 << 62, root)
    except FileNotFoundError:
        return b"", offset
    try:
        size = os.fstat(fd).st_size
        if size < offset:  # truncated or replaced: start again from its beginning
            offset = 0
        data = os.pread(fd, min(size - offset, limit), offset)
    finally:
        os.close(fd)
    return data, offset + len(data)


def is_live(run: RunDir) -> bool:
    """Whether more output may come: a process holds the run's lock, or its job has not
    started yet (submitted)."""
    if claim.is_locked(run.lock):
        return True
    return (read_info(run.root) or {}).get("status") == RunStatus.SUBMITTED


def follow(
    run: RunDir,
    offsets: dict[Path, int],
    streams: tuple[str, ...],
    write: Callable[[Path, bytes], None],
    poll_s: float = POLL_S,
) -> None:
    """Write what is appended to the run's output files (new ones included) until the run
    ends (its lock released), then what it wrote last."""
    while True:
        live = is_live(run)
        for path in _changed(run, offsets, streams):
            while True:
                data, offsets[path] = read_from(path, run.root, offsets[path])
                if not data:
                    break
                write(path, data)
        if not live:
            return
        time.sleep(poll_s)


def _changed(run: RunDir, offsets: dict[Path, int], streams: tuple[str, ...]) -> Iterator[Path]:
    for path in output_files(run, streams):
        offsets.setdefault(path, 0)
        yield path
