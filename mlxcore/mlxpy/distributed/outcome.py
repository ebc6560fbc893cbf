"""One status for a run of several processes: the worst outcome across its ranks.

Each rank writes ``ranks/<k>/status.json`` when it joins (RUNNING) and when it ends, then,
under ``metadata/.status.lock``, merges every rank's status of this attempt into the run's
info. The merge only ever makes the run's status worse, so the result is the same whichever
rank ends last, and a rank failing after rank 0 recorded COMPLETE still fails the run.

Which rank caused a failure: launchers stop the other ranks only after they see one exit
(torchrun a few ms later, a scheduler's task launcher about 0.1 s), and the failing rank has
written its status before it exits. So the ranks the launcher tore down end INTERRUPTED after
the failing one is already on disk, and a FAILED rank always outranks them. Among several
FAILED ranks, one whose error only says that a peer went away (a broken collective) is not
the cause; the earliest other failure is.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from mlxpy.rundir import claim, codec, layout, safe
from mlxpy.rundir.atomic import atomic_write_bytes, atomic_write_text
from mlxpy.rundir.changes import note_change
from mlxpy.rundir.info import read_record, write_info
from mlxpy.rundir.layout import RankDir, RunDir
from mlxpy.rundir.status import RunStatus

#: worst first: the run's status is the first of these any rank of the attempt ended with
SEVERITY = (
    RunStatus.FAILED,
    RunStatus.LOST,
    RunStatus.TIMEOUT,
    RunStatus.PREEMPTED,
    RunStatus.INTERRUPTED,
    RunStatus.CANCELLED,
    RunStatus.COMPLETE,
)
_RANK = {status.value: len(SEVERITY) - n for n, status in enumerate(SEVERITY)}
#: errors a rank gets because a peer died under it (matched by name: torch is not imported)
SECONDARY_ERRORS = ("DistBackendError", "DistNetworkError", "DistStoreError")
SECONDARY_MESSAGES = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
    "Watchdog caught collective operation timeout",
)
MAX_STATUS_BYTES = 256 * 1024
MAX_ERROR_LOG_BYTES = 4 * 1024 * 1024


def severity(status: Any) -> int:
    """Higher is worse; RUNNING and unknown values are 0 (no outcome yet)."""
    return _RANK.get(str(status), 0)


@dataclass
class RankStatus:
    """One rank's ``status.json``."""

    rank: int
    session: str
    status: str
    host: str
    pid: int
    end_time: str | None = None
    error: dict[str, str] | None = None
    interrupt_reason: str | None = None

    @property
    def secondary(self) -> bool:
        """Its error only says a peer went away: not the cause of the run's failure."""
        if not self.error:
            return False
        if self.error.get("type") in SECONDARY_ERRORS:
            return True
        return any(text in self.error.get("message", "") for text in SECONDARY_MESSAGES)


def write_rank_status(rank_dir: RankDir, status: RankStatus) -> None:
    atomic_write_bytes(rank_dir.status, codec.encode(asdict(status)))


def read_rank_status(run: RunDir, rank_dir: RankDir) -> RankStatus | None:
    try:
        data = codec.decode(safe.read_bytes(rank_dir.status, MAX_STATUS_BYTES, run.root))
        error = data.get("error")
        return RankStatus(
            rank=int(data["rank"]),
            session=str(data["session"]),
            status=str(data["status"]),
            host=str(data.get("host", "")),
            pid=int(data.get("pid", 0)),
            end_time=data.get("end_time"),
            error={str(k): str(v) for k, v in error.items()} if isinstance(error, dict) else None,
            interrupt_reason=data.get("interrupt_reason"),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def rank_statuses(run: RunDir, session: str) -> list[RankStatus]:
    """Every rank's status of this attempt. A rank that said RUNNING but whose lock is free
    died without a word (``kill -9``): LOST. Rank 0's own lock is the run's."""
    found: list[RankStatus] = []
    try:
        names = os.listdir(run.ranks)
    except OSError:
        return found
    for name in names:
        if not layout.is_run_id(name):
            continue
        rank_dir = run.rank(int(name))
        status = read_rank_status(run, rank_dir)
        if status is None or status.session != session or status.rank != int(name):
            continue
        if status.status == RunStatus.RUNNING:
            lock = run.lock if status.rank == 0 else rank_dir.lock
            if claim.is_locked(lock):
                continue  # still at work: it merges its own outcome when it ends
            status.status = RunStatus.LOST.value
        found.append(status)
    return found


def wait_for_ranks(run: RunDir, session: str, world_size: int, timeout_s: float) -> None:
    """Rank 0, its task over: give the other ranks ``timeout_s`` to end (one that has not
    even joined yet too), so that the run's recorded end counts them (one killed meanwhile
    is LOST). A rank still at work after that merges its own outcome when it ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _still_running(run, session, world_size):
            return
        time.sleep(0.1)


def _still_running(run: RunDir, session: str, world_size: int) -> bool:
    for rank in range(1, world_size):
        rank_dir = run.rank(rank)
        status = read_rank_status(run, rank_dir)
        if status is None or status.session != session:
            return True  # not joined yet
        if status.status == RunStatus.RUNNING and claim.is_locked(rank_dir.lock):
            return True
    return False


def write_info_locked(run: RunDir, info: dict[str, Any], config: dict[str, Any]) -> None:
    """Rank 0 writing the run's info while other ranks may merge their outcomes into it."""
    with _StatusLock(run):
        write_info(run.root, info, config)


def primary(statuses: list[RankStatus]) -> RankStatus | None:
    """The rank whose outcome is the run's: the worst status; among FAILED ranks, the
    earliest whose error is its own, not a peer's going away."""
    if not statuses:
        return None
    worst = max(severity(s.status) for s in statuses)
    candidates = [s for s in statuses if severity(s.status) == worst]
    own = [s for s in candidates if not s.secondary] or candidates
    return min(own, key=lambda s: (s.end_time or "", s.rank))


def merged(info: dict[str, Any], statuses: list[RankStatus]) -> dict[str, Any] | None:
    """``info`` with the outcome of ``statuses`` if that is at least as bad as what it says
    (and differs), else None. While the run says RUNNING (rank 0 still at work) only a
    failure is merged: the run has failed whatever rank 0 does next."""
    cause = primary(statuses)
    if cause is None:
        return None
    current = info.get("status")
    if current == RunStatus.RUNNING and cause.status != RunStatus.FAILED:
        return None
    if severity(cause.status) < severity(current):
        return None
    out = dict(info)
    out["status"] = cause.status
    if cause.status == RunStatus.FAILED:
        out["failed_rank"] = cause.rank
    if cause.rank != 0:  # rank 0's own way of ending (torn down, say) is not the run's
        out.pop("interrupt_reason", None)
        out.pop("exit_code", None)
        if cause.error:
            out["error"] = {**cause.error, "rank": cause.rank}
        if cause.interrupt_reason:
            out["interrupt_reason"] = cause.interrupt_reason
        if not out.get("end_time"):
            out["end_time"] = cause.end_time
    return None if out == info else out


class _StatusLock:
    """A blocking ``flock`` on ``metadata/.status.lock``: held for one merge, by one rank."""

    def __init__(self, run: RunDir) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(run.status_lock, flags, 0o666)

    def __enter__(self) -> _StatusLock:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)


def record_rank_end(
    run: RunDir,
    rank_dir: RankDir,
    status: RankStatus,
    final_info: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Write this rank's status, then merge every rank's into the run's info. Rank 0 passes
    its ``final_info`` (and config), which is written whatever it holds, merged; another
    rank reads the run's info and writes it only when the merge makes it worse. Returns the
    info written, or None."""
    write_rank_status(rank_dir, status)
    with _StatusLock(run):
        if final_info is None:
            try:
                config, info = read_record(run.root)
            except (OSError, ValueError):
                return None  # rank 0 has not written its info yet: its own end merges this
        else:
            info = final_info
        assert config is not None
        statuses = rank_statuses(run, status.session)
        out = merged(info, statuses)
        if out is None:
            if final_info is None:
                return None
            out = info
        write_info(run.root, out, config)
        if final_info is None:  # a rank other than 0 changed a run that may have ended
            note_change(run.root.parent, run.root.name)
        cause = primary(statuses)
        if cause is not None and out.get("failed_rank") == cause.rank:
            _copy_error_log(run, run.rank(cause.rank))
        return out


def _copy_error_log(run: RunDir, rank_dir: RankDir) -> None:
    """The failing rank's traceback becomes the run's ``metadata/error.log``."""
    try:
        text = safe.read_bytes(rank_dir.error_log, MAX_ERROR_LOG_BYTES, run.root)
    except OSError:
        return
    atomic_write_text(run.error_log, text.decode("utf-8", "replace"))


def mark_joined(rank_dir: RankDir, status: RankStatus) -> None:
    """A rank that joined says so (RUNNING): if it dies without a word, its free lock and
    this status make it LOST."""
    write_rank_status(rank_dir, status)


__all__ = [
    "SEVERITY",
    "RankStatus",
    "mark_joined",
    "merged",
    "primary",
    "rank_statuses",
    "read_rank_status",
    "record_rank_end",
    "severity",
    "wait_for_ranks",
    "write_info_locked",
]
