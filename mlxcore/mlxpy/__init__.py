"""mlxpy: launch, log, version, schedule and read many machine-learning experiments.

Importing mlxpy is cheap: Hydra, pandas, git and plugins load only when they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from mlxpy.artifacts import ArtifactType
from mlxpy.context import Config, Context, RunInfo
from mlxpy.errors import (
    ConfigError,
    LogDirError,
    MlxpyError,
    OptionsError,
    PluginError,
    RunInterrupted,
    UnknownPluginError,
)
from mlxpy.hookspecs import hookimpl
from mlxpy.launcher import launch
from mlxpy.logger import DefaultLogger, Logger
from mlxpy.scheduler import Scheduler
from mlxpy.version_manager import GitVM, VersionManager

__all__ = [
    "__version__",
    "ArtifactType",
    "Config",
    "ConfigError",
    "Context",
    "DefaultLogger",
    "GitVM",
    "LogDirError",
    "Logger",
    "MlxpyError",
    "OptionsError",
    "PluginError",
    "RunInfo",
    "RunInterrupted",
    "Scheduler",
    "UnknownPluginError",
    "VersionManager",
    "hookimpl",
    "launch",
]
