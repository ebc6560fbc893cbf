"""Claiming a run directory (new or resumed) and keeping it to one live process."""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from mlxpy.errors import LogDirError
from mlxpy.rundir.layout import NEXT_ID_FILE, is_run_id, is_temp_name
from mlxpy.rundir.safe import UnsafePathError


def new_uid() -> str:
    """A globally unique, time-ordered run id (UUIDv7, RFC 9562): integer log ids are only
    unique inside one parent dir; runs copied or merged across machines key on this."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def run_ids(parent: Path) -> list[int]:
    """The run ids in ``parent`` (ASCII-decimal directory names; anything else is ignored)."""
    ids = []
    with os.scandir(parent) as entries:
        for entry in entries:
            if is_run_id(entry.name) and entry.is_dir(follow_symlinks=False):
                ids.append(int(entry.name))
    return ids


#: a hint larger than this is not one mlxpy wrote: the ids are found by listing instead
MAX_HINTED_ID = 10**12
#: mkdir collisions walked from the hint before the ids are found by listing instead
MAX_HINT_WALK = 64
_HINT_WIDTH = 24  # the hint is rewritten in place, as one write of this many bytes


def claim_new(parent: Path) -> tuple[int, Path]:
    """The next free integer id, claimed by an exclusive ``mkdir``: two launches can never
    get the same dir, and a collision costs one more ``mkdir``, never a sleep.

    The id tried first is ``max(existing ids) + 1``. Without listing the parent (which costs
    in the number of runs), it comes from the hint ``<parent>/.next_id``: read, and written
    one higher once the dir is made, under an ``flock`` of the hint, so launches on one
    machine take consecutive ids without a collision. The hint is trusted only when the run
    before it exists (runs deleted by hand since: the parent is listed again, as when there
    is no hint, it cannot be read or it is not a number); launches on other machines, and
    dirs made by hand, only cost the ``mkdir`` collisions they cause (past
    :data:`MAX_HINT_WALK` of them, the parent is listed)."""
    try:
        fd = os.open(
            parent / NEXT_ID_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
        )
    except OSError:  # a link, another user's file: the hint is not ours to keep
        return _claim_from(parent, 1 + max(run_ids(parent), default=0), MAX_HINT_WALK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: mkdir still arbitrates
            pass
        candidate = _read_hint(fd, parent)
        if candidate is None:
            candidate = 1 + max(run_ids(parent), default=0)
        log_id, path = _claim_from(parent, candidate, MAX_HINT_WALK)
        try:
            os.pwrite(fd, str(log_id + 1).encode().ljust(_HINT_WIDTH - 1) + b"\n", 0)
        except OSError:  # a full disk: the next launch lists the parent
            pass
        return log_id, path
    finally:
        os.close(fd)  # and the flock with it


def _read_hint(fd: int, parent: Path) -> int | None:
    """The id the hint names, if it is one to trust: a number mlxpy could have written, with
    the run before it in place (or 1)."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.pread(fd, _HINT_WIDTH, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not is_run_id(text) or not 0 < int(text) <= MAX_HINTED_ID:
        return None
    hinted = int(text)
    if hinted > 1 and not os.path.isdir(parent / str(hinted - 1)):
        return None  # the last run was deleted (or the hint is not ours): list the parent
    return hinted


def _claim_from(parent: Path, candidate: int, walk: int) -> tuple[int, Path]:
    """``mkdir`` from ``candidate`` up; after ``walk`` collisions, from past the largest id."""
    for _ in range(walk):
        try:
            (parent / str(candidate)).mkdir()
            return candidate, parent / str(candidate)
        except FileExistsError:
            candidate += 1
    candidate = max(candidate, 1 + max(run_ids(parent), default=0))
    while True:
        try:
            (parent / str(candidate)).mkdir()
            return candidate, parent / str(candidate)
        except FileExistsError:
            candidate += 1


class RunLock:
    """An exclusive ``flock`` held while the run lives; the kernel drops it when the process
    dies, even by ``kill -9``, so it tells live runs from dead ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def acquire(self, log_id: Any) -> None:
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            self.fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(
                    f"{self.path} is a symbolic link; mlxpy does not follow links inside a run "
                    "directory (remove it)"
                ) from None
            raise
        try:
            flock_briefly(self.fd)
        except BlockingIOError:
            owner = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            self.fd = -1
            raise LogDirError(
                f"run {log_id} is in use by a live process ({owner}); wait for it to end or "
                "resume another run"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def flock_briefly(fd: int) -> None:
    """Take the lock, waiting a moment: a reader probing it (``is_locked``) holds it for
    microseconds, and must not make a starting run (or a sweep's submitter) think another
    one lives."""
    for _ in range(20):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.01)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def is_locked(path: Path) -> bool | None:
    """Whether a live process holds the run lock at ``path``; None when there is no lock."""
    try:
        # read-only: flock needs no write access, so another user's runs are judged too
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def remove_stale_temps(root: Path) -> None:
    """Delete temp files left by a killed writer (only our own names, see
    ``layout.is_temp_name``). Called while holding the run's lock, so no live writer owns
    them; symlinked directories are not entered."""
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            if is_temp_name(filename):
                try:
                    os.unlink(os.path.join(dirpath, filename))
                except OSError:
                    pass
