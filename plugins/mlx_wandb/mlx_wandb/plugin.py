"""Entry point of mlxpy-wandb. Checks that wandb is installed without importing it (importing
wandb takes about a second): launches that do not select WandbLogger never pay for it."""

from __future__ import annotations

import importlib.util

import mlxpy


@mlxpy.hookimpl
def mlxpy_register_loggers() -> list[type]:
    if importlib.util.find_spec("wandb") is None:
        raise ModuleNotFoundError("No module named 'wandb': pip install wandb")
    from mlx_wandb.logger import WandbLogger

    return [WandbLogger]
