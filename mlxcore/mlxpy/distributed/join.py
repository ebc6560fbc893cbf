"""How the ranks of one distributed job find the run dir rank 0 started.

Rank 0 claims (or resumes) the run dir as a single process would, then publishes
``<parent>/.joins/<sha256 of the job key>.json`` atomically. Every other rank polls for that
file: it is named after the launcher's identity of the job (a torchrun run id, a scheduler's
job and step), never after anything the ranks would race to create, so the only shared write is
rank 0's rename. A file of an earlier attempt (a restart under the same key) or of a dead job
that reused a key is ignored. The file is untrusted input like any run file: bounded, JSON
only, no links, and the run dir it names is always ``<parent>/<log id>``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from mlxpy.distributed.detect import DistInfo
from mlxpy.errors import LogDirError
from mlxpy.rundir import claim, codec, layout, safe
from mlxpy.rundir.atomic import atomic_write_bytes
from mlxpy.rundir.info import read_info
from mlxpy.rundir.layout import RunDir

#: a join record is a few hundred bytes; anything larger is not one
MAX_JOIN_BYTES = 64 * 1024


@dataclass(frozen=True)
class JoinRecord:
    """What rank 0 publishes: the run it started for this attempt of the job, and a
    ``session`` id that every rank stamps on its status, so statuses of an earlier attempt
    are never counted."""

    key: str
    attempt: str
    log_id: int
    uid: str
    session: str
    host: str
    pid: int
    written: float


def join_file(parent: Path, key: str) -> Path:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return parent / layout.JOINS_DIR / f"{digest}.json"


def new_session() -> str:
    return uuid.uuid4().hex


def publish(parent: Path, dist: DistInfo, log_id: int, uid: str, session: str) -> None:
    """Rank 0: tell the other ranks which run dir this attempt of the job uses."""
    assert dist.key is not None
    path = join_file(parent, dist.key)
    joins = path.parent
    try:
        joins.mkdir(exist_ok=True)
    except FileExistsError:
        pass
    safe.check_inside(parent, path)  # a planted link to elsewhere is refused
    record = JoinRecord(
        dist.key,
        dist.attempt,
        log_id,
        uid,
        session,
        socket.gethostname(),
        os.getpid(),
        time.time(),
    )
    atomic_write_bytes(path, codec.encode(asdict(record)))


def read(parent: Path, key: str) -> JoinRecord | None:
    """The record published for ``key``, or None if there is none (or it is not a valid
    record: a rank then keeps waiting, as for a missing one)."""
    path = join_file(parent, key)
    try:
        data = codec.decode(safe.read_bytes(path, MAX_JOIN_BYTES, parent))
        record = JoinRecord(
            key=str(data["key"]),
            attempt=str(data["attempt"]),
            log_id=int(data["log_id"]),
            uid=str(data["uid"]),
            session=str(data["session"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            written=float(data["written"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.key != key or not layout.is_run_id(str(record.log_id)):
        return None  # a hash collision, or a record naming no run of this parent
    return record


def run_dir(parent: Path, record: JoinRecord) -> Path:
    return parent / str(record.log_id)


def _acceptable(parent: Path, dist: DistInfo, record: JoinRecord) -> bool:
    """A record of this attempt, of the run it names. Under a key that another job may have
    used before (a fixed ``--rdzv_id``, an address), only a live run: its rank 0 withdraws
    the record when it ends, and one left by a killed job names a dead run."""
    if record.attempt != dist.attempt:
        return False
    run = RunDir(run_dir(parent, record))
    if not dist.unique_key and not claim.is_locked(run.lock):
        return False
    info = read_info(run.root)  # the run the record names is the one rank 0 started
    return info is None or info.get("uid") == record.uid


def withdraw(parent: Path, dist: DistInfo, session: str) -> None:
    """Rank 0 of a job whose key is not unique, at its end: remove its record (if it is
    still its own), so that a later job under the same key never joins this run."""
    if dist.key is None or dist.unique_key:
        return
    record = read(parent, dist.key)
    if record is not None and record.session == session:
        try:
            os.unlink(join_file(parent, dist.key))
        except OSError:
            pass


def wait(parent: Path, dist: DistInfo, timeout_s: float) -> JoinRecord:
    """A rank other than 0: wait for rank 0 of this attempt to publish its run. Polls (50 ms,
    doubling to 1 s); raises :class:`LogDirError` after ``timeout_s``."""
    assert dist.key is not None
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        record = read(parent, dist.key)
        if record is not None and _acceptable(parent, dist, record):
            return record
        now = time.monotonic()
        if now >= deadline:
            path = join_file(parent, dist.key)
            seen = (
                f"found one for attempt {record.attempt}, not {dist.attempt}"
                if record is not None
                else f"no {path.relative_to(parent)} appeared"
            )
            raise LogDirError(
                f"rank {dist.rank} of {dist.world_size} ({dist.launcher} job {dist.key}) waited "
                f"{timeout_s:g} s for rank 0 to start its run in {parent}: {seen}. Is rank 0 "
                "alive (see its output)? Do all ranks resolve logger.parent_log_dir to the same "
                "shared directory? A slow start (a large code snapshot) needs a longer "
                "+mlxpy.logger.join_timeout_s"
            )
        time.sleep(min(delay, max(deadline - now, 0.0)))
        delay = min(delay * 2, 1.0)


__all__ = [
    "JoinRecord",
    "join_file",
    "new_session",
    "publish",
    "read",
    "run_dir",
    "wait",
    "withdraw",
]
