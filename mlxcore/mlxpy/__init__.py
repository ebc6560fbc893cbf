"""mlxpy: launch, log, version, schedule and read many machine-learning experiments.

Importing mlxpy is cheap: Hydra, pandas, git and plugins load only when they are used.
"""

from __future__ import annotations

from mlxpy import _moved
from mlxpy._version import __version__
from mlxpy.context import Config, Context, RunInfo
from mlxpy.distributed import DistInfo, DistributedSetupError, SchedulerTask
from mlxpy.errors import (
    ConfigError,
    LogDirError,
    MlxpyError,
    MlxpyWarning,
    OptionsError,
    PluginError,
    RunInterrupted,
    UnknownPluginError,
)
from mlxpy.hookspecs import hookimpl
from mlxpy.launching.launcher import launch
from mlxpy.rundir import FORMAT_VERSION, RunDir, RunStatus
from mlxpy.rundir.artifacts import ArtifactType
from mlxpy.rundir.logger import DefaultLogger, Logger
from mlxpy.rundir.metrics import read_metrics
from mlxpy.rundir.safe import open_regular
from mlxpy.scheduling.base import JobPhase, JobState, ScheduledJob, Scheduler, SubmissionError
from mlxpy.sweeping.manifest import SweepError
from mlxpy.sweeping.objective import Objective
from mlxpy.sweeping.space import Choice, Interval, SearchSpace
from mlxpy.sweeping.sweeper import BasicSweeper, Sweeper, Trial
from mlxpy.versioning.base import GitVM, VersionManager

_moved.install()  # old module paths (mlxpy.logger, ...) still import

_LAZY = {"Reader": "mlxpy.reading.reader", "QueryError": "mlxpy.reading.query"}


def __getattr__(name: str):  # the reader needs pandas: import it on first use only
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlxpy' has no attribute {name!r}")


__all__ = [
    "__version__",
    "ArtifactType",
    "BasicSweeper",
    "Choice",
    "Interval",
    "Objective",
    "SearchSpace",
    "Sweeper",
    "Trial",
    "Config",
    "ConfigError",
    "Context",
    "DefaultLogger",
    "DistInfo",
    "DistributedSetupError",
    "FORMAT_VERSION",
    "GitVM",
    "LogDirError",
    "Logger",
    "MlxpyError",
    "MlxpyWarning",
    "OptionsError",
    "PluginError",
    "QueryError",
    "Reader",
    "RunInfo",
    "RunDir",
    "RunInterrupted",
    "RunStatus",
    "JobPhase",
    "JobState",
    "ScheduledJob",
    "SchedulerTask",
    "Scheduler",
    "SubmissionError",
    "SweepError",
    "UnknownPluginError",
    "VersionManager",
    "hookimpl",
    "launch",
    "open_regular",
    "read_metrics",
]
