"""The core's builtin implementations, registered through the ``mlxpy`` entry-point group
exactly as a third-party plugin's ``plugin.py`` would be."""

from __future__ import annotations

from mlxpy.hookspecs import hookimpl


@hookimpl
def mlxpy_register_loggers() -> list[type]:
    from mlxpy.logger import DefaultLogger

    return [DefaultLogger]


@hookimpl
def mlxpy_register_schedulers() -> list[type]:
    from mlxpy.local_scheduler import LocalScheduler
    from mlxpy.scheduler import Scheduler

    return [Scheduler, LocalScheduler]


@hookimpl
def mlxpy_register_version_managers() -> list[type]:
    from mlxpy.version_manager import GitVM

    return [GitVM]
