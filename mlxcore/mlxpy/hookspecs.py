"""The hooks mlxpy calls; plugins implement them with ``@mlxpy.hookimpl``.

Two families:

* **Registration hooks** return classes. Each class subclasses its role's base class and
  carries the ``name`` users write in ``mlxpy.yaml``. Every installed plugin answers them.
* **Lifecycle hooks** are broadcast events. They fire in every registered plugin, and in the
  *selected* logger, scheduler or version manager when that instance defines them, so a
  plugin reacts only to what the user actually chose.

The one required operation of a role (``Logger.log_metrics``, ``Scheduler.submit``,
``VersionManager.make_working_directory``) is a plain method of the selected instance, not a
hook: a hook would call every installed implementation.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "mlxpy"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RegistrationSpecs:
    """Hooks that tell mlxpy which implementations a plugin provides."""

    @hookspec
    def mlxpy_register_loggers(self) -> list[type]:
        """Return :class:`mlxpy.Logger` subclasses, each with a unique ``name``."""

    @hookspec
    def mlxpy_register_schedulers(self) -> list[type]:
        """Return :class:`mlxpy.Scheduler` subclasses, each with a unique ``name``."""

    @hookspec
    def mlxpy_register_version_managers(self) -> list[type]:
        """Return :class:`mlxpy.VersionManager` subclasses, each with a unique ``name``."""

    @hookspec
    def mlxpy_register_artifact_types(self) -> list[Any]:
        """Return artifact types (name, save, load, extension) the logger can store."""


class RunSpecs:
    """Events in the life of one run, in the process that executes the task."""

    @hookspec
    def mlxpy_before_run(self, ctx: Any) -> None:
        """The run dir exists and ``ctx`` is complete; the task is about to start."""

    @hookspec
    def mlxpy_after_run(self, ctx: Any, status: str) -> None:
        """The task ended (``status`` is COMPLETE, FAILED or INTERRUPTED); files are written."""

    @hookspec
    def mlxpy_on_run_error(self, ctx: Any, error: BaseException) -> None:
        """The task raised ``error`` (also KeyboardInterrupt and SIGTERM) before it is re-raised."""

    @hookspec
    def mlxpy_on_run_signal(self, ctx: Any, signame: str, status: str) -> None:
        """The scheduler warned that the job is about to be stopped (``status`` TIMEOUT or
        PREEMPTED): the last chance to checkpoint before the run is recorded and requeued."""


class LoggingSpecs:
    """Events fired by the logger after it has stored something."""

    @hookspec
    def mlxpy_after_metrics_logged(
        self, ctx: Any, metrics: dict[str, Any], log_name: str, step: Any
    ) -> None:
        """``metrics`` were appended to the metrics log ``log_name``."""

    @hookspec
    def mlxpy_after_artifact_logged(
        self, ctx: Any, name: str, artifact_type: str, path: str
    ) -> None:
        """An artifact was stored at ``path``."""

    @hookspec
    def mlxpy_after_checkpoint_logged(self, ctx: Any, name: str, path: str) -> None:
        """A checkpoint was stored (atomically) at ``path``."""


class SchedulingSpecs:
    """Events around submitting jobs to a scheduler."""

    @hookspec
    def mlxpy_before_job_submit(self, job: Any) -> None:
        """A job script is written and about to be submitted."""

    @hookspec
    def mlxpy_after_job_submit(self, job: Any, job_id: str) -> None:
        """The scheduler accepted ``job`` under ``job_id``."""


class VersioningSpecs:
    """Events of the version manager."""

    @hookspec
    def mlxpy_after_workdir_created(self, info: dict[str, Any]) -> None:
        """A frozen working copy of the code is ready; ``info`` describes it."""


SPEC_CLASSES = (RegistrationSpecs, RunSpecs, LoggingSpecs, SchedulingSpecs, VersioningSpecs)
