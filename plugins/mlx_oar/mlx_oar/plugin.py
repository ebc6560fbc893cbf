"""Entry point of the mlxpy-oar distribution: registers OARScheduler."""

from __future__ import annotations

import mlxpy


@mlxpy.hookimpl
def mlxpy_register_schedulers() -> list[type]:
    from mlx_oar.scheduler import OARScheduler

    return [OARScheduler]
