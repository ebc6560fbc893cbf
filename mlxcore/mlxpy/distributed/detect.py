"""Which process of a distributed job this is, from the environment its launcher set.

Read once per run, without importing torch. The first launcher whose rank variables are
present decides rank *and* world size (sources are never mixed): torchrun (elastic) first,
as it also runs inside SLURM steps and MPI; then a bare ``RANK``/``WORLD_SIZE``; OpenMPI; PMI;
and SLURM tasks last, and only inside a step (``SLURM_STEP_ID``): a ``--ntasks=2`` batch
shell has ``SLURM_PROCID=0`` and ``SLURM_NTASKS=2`` but is one process, not rank 0 of two.
OAR sets no rank at all: ranks there come from the launcher run inside the job.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from mlxpy.errors import MlxpyError

#: set by hand, names the job for launchers that give it no identity (PMI outside srun)
JOB_KEY_ENV = "MLXPY_JOB_KEY"


class DistributedSetupError(MlxpyError):
    """The launcher's environment is inconsistent (a rank that is not a number, rank >= size)."""


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
            "the launcher (torchrun, srun, mpirun); unset it or fix the launch command"
        ) from None


def _slurm_step(env: Mapping[str, str]) -> str | None:
    """``slurm:<cluster>:<job>.<step>`` inside a SLURM job step (array tasks have their own
    job id), else None."""
    job, step = env.get("SLURM_JOB_ID"), env.get("SLURM_STEP_ID", env.get("SLURM_STEPID"))
    if not job or step is None or step == "":
        return None
    return f"slurm:{env.get('SLURM_CLUSTER_NAME', '')}:{job}.{step}"


def _namespace(env: Mapping[str, str]) -> str:
    """What the processes of one job share whatever their node: the scheduler's job (and
    step), else the master address their launcher gave them."""
    step = _slurm_step(env)
    if step is not None:
        return step
    if env.get("OAR_JOB_ID"):
        return f"oar:{env['OAR_JOB_ID']}"
    return f"addr:{env.get('MASTER_ADDR') or socket.gethostname()}"


def _attempt(env: Mapping[str, str], restarts: int = 0) -> str:
    """A requeue by the scheduler and a restart by the launcher each make a new attempt."""
    requeues = _int(env, "SLURM_RESTART_COUNT", 0)
    return f"{requeues}.{restarts}"


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


def detect(env: Mapping[str, str] | None = None) -> DistInfo:
    """This process's :class:`DistInfo` (``SINGLE`` when it is not part of a distributed
    job). Raises :class:`DistributedSetupError` on an inconsistent environment."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK", rank)
        run_id = env.get("TORCHELASTIC_RUN_ID")
        if run_id:
            restarts = _int(env, "TORCHELASTIC_RESTART_COUNT", 0)
            unique = _looks_unique(run_id)
            key = f"te:{run_id}" if unique else f"te:{run_id}|{_namespace(env)}"
            info = DistInfo("torchelastic", rank, size, local, key, _attempt(env, restarts), unique)
        else:
            where = f"{env.get('MASTER_ADDR', '')}:{env.get('MASTER_PORT', '')}"
            key = f"env:{where}|{_namespace(env)}"
            info = DistInfo("env", rank, size, local, key, _attempt(env), False)
        return _keyed(env, _checked(info))
    if "OMPI_COMM_WORLD_RANK" in env:
        rank, size = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
        local = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0)
        job = env.get("PMIX_NAMESPACE") or env.get("OMPI_MCA_ess_base_jobid") or ""
        info = DistInfo(
            "openmpi", rank, size, local, f"mpi:{job}|{_namespace(env)}", _attempt(env), bool(job)
        )
        return _keyed(env, _checked(info))
    if "PMI_RANK" in env:
        rank, size = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
        local = _int(env, "MPI_LOCALRANKID", _int(env, "SLURM_LOCALID", 0))
        step = _slurm_step(env)
        info = DistInfo("pmi", rank, size, local, step, _attempt(env), step is not None)
        info = _keyed(env, _checked(info))
        if info.distributed and info.key is None:
            raise DistributedSetupError(
                f"rank {rank} of {size} (PMI_RANK/PMI_SIZE) has no job identity the other "
                f"ranks share: set {JOB_KEY_ENV} to the same value on every rank of the job "
                "(e.g. the scheduler's job id), or launch with srun"
            )
        return info
    step = _slurm_step(env)
    if step is not None and "SLURM_PROCID" in env:
        rank = _int(env, "SLURM_PROCID")
        size = _int(env, "SLURM_STEP_NUM_TASKS", _int(env, "SLURM_NTASKS", 1))
        local = _int(env, "SLURM_LOCALID", 0)
        info = DistInfo("slurm", rank, size, local, step, _attempt(env), True)
        return _keyed(env, _checked(info))
    return SINGLE


__all__ = ["JOB_KEY_ENV", "SINGLE", "DistInfo", "DistributedSetupError", "detect"]
