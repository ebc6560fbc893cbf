"""Entry point of the mlxpy-slurm distribution: registers SLURMScheduler. Imports nothing
heavy; the scheduler module is loaded when the hook is called."""

from __future__ import annotations

import mlxpy


@mlxpy.hookimpl
def mlxpy_register_schedulers() -> list[type]:
    from mlx_slurm.scheduler import SLURMScheduler

    return [SLURMScheduler]
