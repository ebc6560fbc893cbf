"""Entry point of mlxpy-optuna. Checks that optuna is installed without importing it
(importing optuna takes about a second): launches that do not select OptunaSweeper never pay
for it."""

from __future__ import annotations

import importlib.util

import mlxpy


@mlxpy.hookimpl
def mlxpy_register_sweepers() -> list[type]:
    if importlib.util.find_spec("optuna") is None:
        raise ModuleNotFoundError("No module named 'optuna': pip install optuna")
    from mlx_optuna.sweeper import OptunaSweeper

    return [OptunaSweeper]
