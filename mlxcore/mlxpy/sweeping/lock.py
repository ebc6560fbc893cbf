"""The locks of a sweep's folder, so that the processes at work on one sweep know of each
other: ``resume.lock`` is held by the process running or resuming the sweep (a second one
refuses instead of running its points again), ``submit.lock`` by a process submitting its
points, from the claim of their run dirs until their job ids are saved (a point claimed by
a submitter that was killed meanwhile is told from one still being submitted).

Each is an exclusive ``flock``, which the kernel drops when its process dies, even by
``kill -9``; the file names the holder (pid and host) for the messages.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import orjson

from mlxpy.rundir.claim import flock_briefly, is_locked
from mlxpy.rundir.safe import read_bytes
from mlxpy.sweeping.manifest import SweepError, sweep_dir

RESUME_LOCK = "resume.lock"
SUBMIT_LOCK = "submit.lock"
SUBMIT_LOCK = "submit.lock"
#: a lock file larger than this is not someone's pid and host
_MAX_HOLDER_BYTES = 4096


class SweepLock:
    """One lock of a sweep's folder, taken without waiting: held, it raises a
    :class:`SweepError` naming its holder."""

    def __init__(self, parent_log_dir: Path, sweep_id: str, name: str, doing: str) -> None:
        self.parent = Path(parent_log_dir)
        self.sweep_id = sweep_id
        self.path = sweep_dir(self.parent, sweep_id) / name
        self.doing = doing  # "resumed", "run", "submitted": for the refusal
        self.fd = -1

    def acquire(self) -> SweepLock:
        # CLOEXEC: a launch that execs itself from a snapshot takes it again
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            link = " (a symbolic link: remove it)" if exc.errno == errno.ELOOP else ""
            raise SweepError(f"cannot open the sweep lock {self.path}: {exc}{link}") from None
        try:
            flock_briefly(self.fd)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            who = holder(self.path)
            raise SweepError(
                f"sweep {self.sweep_id} is being {self.doing} by pid {who.get('pid', '?')} on "
                f"host {who.get('host', '?')}; wait for it (mlxpy sweep status "
                f"{self.sweep_id} {self.parent} shows its points)"
            ) from None
        os.ftruncate(self.fd, 0)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        os.pwrite(self.fd, orjson.dumps(me) + b"\n", 0)
        return self

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def holder(path: Path) -> dict[str, object]:
    """Who last took the lock at ``path`` (``pid``, ``host``); empty when unknown."""
    try:
        data = orjson.loads(read_bytes(path, _MAX_HOLDER_BYTES))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def submitter_gone(parent_log_dir: Path, sweep_id: str) -> bool:
    """Whether the last process that submitted points of the sweep is known to be gone: its
    lock is free, and it ran on this host (where a free lock is the truth). False when
    that cannot be told (no lock, another host's)."""
    path = sweep_dir(Path(parent_log_dir), sweep_id) / SUBMIT_LOCK
    if is_locked(path) is not False:
        return False
    return holder(path).get("host") == socket.gethostname()
