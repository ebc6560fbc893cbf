"""Test helpers for mlxpy and its plugins: :class:`ProjectDir`, a real project in a temp dir
launched as ``python main.py ...``, and the conformance suites a plugin subclasses in its own
tests: :class:`SchedulerSuite` (against its real scheduler), :class:`LoggerSuite`,
:class:`VersionManagerSuite`, and :class:`PlanningSweeperSuite` or :class:`AdaptiveSweeperSuite`
for a sweeper. The builtins pass the same suites."""

from __future__ import annotations

from mlxpy.testing.logger_suite import LOGGER_TASK, LoggerSuite
from mlxpy.testing.project import (
    COMPLETE,
    FAILED,
    RESUMABLE_TASK,
    SUITE_TASK,
    SWEEP_CONFIG,
    SWEEP_TASK,
    TERMINAL_RUN,
    ProjectDir,
)
from mlxpy.testing.scheduler_suite import SchedulerSuite
from mlxpy.testing.sweeper_suite import (
    OBJECTIVE_TASK,
    AdaptiveSweeperSuite,
    PlanningSweeperSuite,
    SweeperSuite,
)
from mlxpy.testing.version_manager_suite import VersionManagerSuite

__all__ = [
    "COMPLETE",
    "FAILED",
    "LOGGER_TASK",
    "OBJECTIVE_TASK",
    "RESUMABLE_TASK",
    "SUITE_TASK",
    "SWEEP_CONFIG",
    "SWEEP_TASK",
    "TERMINAL_RUN",
    "LoggerSuite",
    "ProjectDir",
    "SchedulerSuite",
    "AdaptiveSweeperSuite",
    "PlanningSweeperSuite",
    "SweeperSuite",
    "VersionManagerSuite",
]
