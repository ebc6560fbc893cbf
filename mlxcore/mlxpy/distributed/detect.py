"""Which process of a distributed job this is, from the environment its launcher set.

Read once per run, without importing torch. The first launcher whose rank variables are
present decides rank *and* world size (sources are never mixed): torchrun (elastic) first,
as it also runs inside a scheduler's job steps and under MPI; then a bare
``RANK``/``WORLD_SIZE``; OpenMPI; PMI; and last the tasks a scheduler's own task launcher
started. What a scheduler's environment says (its job's identity, how often it was requeued,
the ranks of its tasks) comes from the scheduler plugins
(:meth:`mlxpy.Scheduler.task_environment`), as a :class:`SchedulerTask`: the core names no
scheduler.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from mlxpy.errors import MlxpyError

#: set by hand, names the job for launchers that give it no identity (PMI outside a job step)
JOB_KEY_ENV = "MLXPY_JOB_KEY"


class DistributedSetupError(MlxpyError):
    """The launcher's environment is inconsistent (a rank that is not a number, rank >= size)."""


@dataclass(frozen=True)
class SchedulerTask:
    """What a scheduler's environment tells about this process: ``job``, the identity of the
    job (and step) it runs in, the same on every node; ``requeues``, how many times the
    scheduler started the job again; and, when the scheduler's own task launcher started this
    process as one of several tasks, its ``rank`` among ``world_size`` (``launcher`` names
    it). A scheduler's batch shell is no task: it has no rank."""

    job: str
    requeues: int = 0
    launcher: str = ""
    rank: int | None = None
    world_size: int | None = None
    local_rank: int | None = None


@dataclass(frozen=True)
class DistInfo:
    """This process's place in its job. ``key`` is shared by every rank of the job (and by
    its restarts); ``attempt`` changes when the launcher restarts the job under the same key;
    ``unique_key`` says whether the launcher makes the key unique per job (a torchrun
    standalone run id is; a ``--rdzv_id`` the user fixed is not)."""

    launcher: str = "single"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    key: str | None = None
    attempt: str = "0"
    unique_key: bool = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistInfo()


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = env.get(name)
    if text is None or text == "":
        if default is None:
            raise DistributedSetupError(
                f"{name} is not set, though the other variables of its launcher are"
            )
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedSetupError(
            f"{name}={text!r} in the environment is not a whole number: it should be set by "
            "the launcher (torchrun, mpirun, the scheduler's task launcher); unset it or fix "
            "the launch command"
        ) from None


def _namespace(env: Mapping[str, str], task: SchedulerTask | None) -> str:
    """What the processes of one job share whatever their node: the scheduler's job (and
    step), else the master address their launcher gave them."""
    if task is not None:
        return task.job
    return f"addr:{env.get('MASTER_ADDR') or socket.gethostname()}"


def _attempt(task: SchedulerTask | None, restarts: int = 0) -> str:
    """A requeue by the scheduler and a restart by the launcher each make a new attempt."""
    return f"{task.requeues if task is not None else 0}.{restarts}"


def _looks_unique(run_id: str) -> bool:
    """torchrun gives single-node launches a fresh uuid4 as run id; a multi-node launch
    gets ``none`` or the user's ``--rdzv_id`` (often a fixed number)."""
    return len(run_id) == 36 and run_id.count("-") == 4


def _checked(info: DistInfo) -> DistInfo:
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise DistributedSetupError(
            f"{info.launcher} says this process is rank {info.rank} of {info.world_size}: a "
            "rank must be between 0 and the world size - 1; check the launch command"
        )
    if info.world_size == 1:  # one process: a single run, as without a launcher
        return SINGLE
    return info


def _keyed(env: Mapping[str, str], info: DistInfo) -> DistInfo:
    own = env.get(JOB_KEY_ENV)
    if own:
        return DistInfo(**{**info.__dict__, "key": f"user:{own}", "unique_key": False})
    return info


def detect(env: Mapping[str, str] | None = None, task: SchedulerTask | None = None) -> DistInfo:
    """This process's :class:`DistInfo` (``SINGLE`` when it is not part of a distributed
    job), given what the scheduler's environment says (``task``, if the process runs in a
    scheduler's job). Raises :class:`DistributedSetupError` on an inconsistent environment."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK", rank)
        run_id = env.get("TORCHELASTIC_RUN_ID")
        if run_id:
            restarts = _int(env, "TORCHELASTIC_RESTART_COUNT", 0)
            unique = _looks_unique(run_id)
            # a fixed id (``none``, a --rdzv_id): the rendezvous address tells jobs apart
            where = f"{env.get('MASTER_ADDR', '')}:{env.get('MASTER_PORT', '')}"
            at = f"@{where}" if where != ":" else ""
            key = f"te:{run_id}" if unique else f"te:{run_id}{at}|{_namespace(env, task)}"
            info = DistInfo(
                "torchelastic", rank, size, local, key, _attempt(task, restarts), unique
            )
        else:
            where = f"{env.get('MASTER_ADDR', '')}:{env.get('MASTER_PORT', '')}"
            key = f"env:{where}|{_namespace(env, task)}"
            info = DistInfo("env", rank, size, local, key, _attempt(task), False)
        return _keyed(env, _checked(info))
    if "OMPI_COMM_WORLD_RANK" in env:
        rank, size = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
        local = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0)
        job = env.get("PMIX_NAMESPACE") or env.get("OMPI_MCA_ess_base_jobid") or ""
        # MPI's own job id is the same on every rank, whichever node or step started it
        key = f"mpi:{job}" if job else f"mpi:|{_namespace(env, task)}"
        info = DistInfo("openmpi", rank, size, local, key, _attempt(task), bool(job))
        return _keyed(env, _checked(info))
    if "PMI_RANK" in env:
        rank, size = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
        in_step = task is not None and task.rank is not None
        default_local = (task.local_rank if task is not None else None) or 0
        local = _int(env, "MPI_LOCALRANKID", default_local)
        job_key = task.job if task is not None else None
        info = DistInfo("pmi", rank, size, local, job_key, _attempt(task), in_step)
        info = _keyed(env, _checked(info))
        if info.distributed and info.key is None:
            raise DistributedSetupError(
                f"rank {rank} of {size} (PMI_RANK/PMI_SIZE) has no job identity the other "
                f"ranks share: set {JOB_KEY_ENV} to the same value on every rank of the job "
                "(e.g. the scheduler's job id), or start the ranks with the scheduler's own "
                "task launcher"
            )
        return info
    if task is not None and task.rank is not None:
        size = task.world_size or 1
        info = DistInfo(
            task.launcher or "scheduler",
            task.rank,
            size,
            task.local_rank or 0,
            task.job,
            _attempt(task),
            True,
        )
        return _keyed(env, _checked(info))
    return SINGLE


__all__ = ["JOB_KEY_ENV", "SINGLE", "DistInfo", "DistributedSetupError", "SchedulerTask", "detect"]
