"""Runs of several processes (torchrun, DDP, a scheduler's tasks, MPI): one run dir per job.

:mod:`~mlxpy.distributed.detect` tells which rank a process is, :mod:`~mlxpy.distributed.join`
how ranks find the run dir rank 0 started, :mod:`~mlxpy.distributed.outcome` how their
statuses make the run's. Nothing here imports torch.
"""

from mlxpy.distributed.detect import (
    SINGLE,
    DistInfo,
    DistributedSetupError,
    SchedulerTask,
    detect,
)

__all__ = ["SINGLE", "DistInfo", "DistributedSetupError", "SchedulerTask", "detect"]
