"""The hooks mlxpy calls; plugins implement them with ``@mlxpy.hookimpl``. This module is the
reference of the hook API: each spec's signature and docstring say when it fires, in which
process, and what it receives.

Two families:

* **Registration hooks** return classes (or artifact types). Each class subclasses its role's
  base class and carries the ``name`` users write in ``mlxpy.yaml``. Every installed plugin
  answers them, each in isolation (one that raises is recorded as failed, the others go on).
* **Lifecycle hooks** are broadcast events. Each fires in every registered plugin *and* in the
  selected instances the event concerns, when their class implements it as a method: the
  run's logger, scheduler and version manager for a run's events; the job's logger and the
  launch's scheduler and version manager for a submission's events. The core registers those
  instances with the plugin manager for the event's duration and unregisters them after, so a
  class's hook methods fire only when a user selected that class.

Processes: a run's events fire in the process that executes the task (the launching process
for a plain launch, the process started from the frozen copy of the code when a version
manager is on, the scheduler's job on a cluster); submission events and
``mlxpy_after_workdir_created`` fire in the launching process.

The one required operation of a role (``Logger.log_metrics``, ``Scheduler.submit``,
``VersionManager.make_working_directory``) is a plain method of the selected instance, not a
hook: a hook would call every installed implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # for the annotations only: importing hookspecs stays cheap and cycle-free
    from mlxpy.context import Context
    from mlxpy.rundir.artifacts import ArtifactType
    from mlxpy.rundir.logger import Logger
    from mlxpy.rundir.status import RunStatus
    from mlxpy.scheduling.base import ScheduledJob, Scheduler
    from mlxpy.sweeping.sweeper import Sweeper
    from mlxpy.versioning.base import VersionManager

PROJECT_NAME = "mlxpy"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RegistrationSpecs:
    """Hooks that tell mlxpy which implementations a plugin provides. Called whenever the
    registry builds its class tables (on the first selection by name, in every process that
    selects a class), never at ``import mlxpy``."""

    @hookspec
    def mlxpy_register_loggers(self) -> Iterable[type[Logger]]:
        """The loggers this plugin provides.

        Returns:
            :class:`mlxpy.Logger` subclasses, each with a ``name`` unique among the installed
            plugins (``logger.name`` in ``mlxpy.yaml`` selects one).
        """

    @hookspec
    def mlxpy_register_schedulers(self) -> Iterable[type[Scheduler]]:
        """The schedulers this plugin provides.

        Returns:
            :class:`mlxpy.Scheduler` subclasses, each with a unique ``name``
            (``scheduler.name``).
        """

    @hookspec
    def mlxpy_register_version_managers(self) -> Iterable[type[VersionManager]]:
        """The version managers this plugin provides.

        Returns:
            :class:`mlxpy.VersionManager` subclasses, each with a unique ``name``
            (``version_manager.name``).
        """

    @hookspec
    def mlxpy_register_sweepers(self) -> Iterable[type[Sweeper]]:
        """The sweepers this plugin provides.

        Returns:
            :class:`mlxpy.Sweeper` subclasses, each with a unique ``name`` (``sweep.name``).
        """

    @hookspec
    def mlxpy_register_artifact_types(self) -> Iterable[ArtifactType]:
        """The artifact types this plugin teaches the loggers, asked when a run starts.

        Returns:
            :class:`mlxpy.ArtifactType` values (name, save, load, extension); a name already
            provided is kept from the plugin pluggy calls first.
        """


class RunSpecs:
    """Events in the life of one run, in the process that executes the task."""

    @hookspec
    def mlxpy_before_run(self, ctx: Context) -> None:
        """The run dir is claimed and its info saved (status RUNNING); the task is about to
        start (after this hook, the seeding function, then the task).

        Args:
            ctx: the run's context; ``ctx.info.log_id`` and ``ctx.info.log_dir`` are set.
        """

    @hookspec
    def mlxpy_after_run(self, ctx: Context, status: RunStatus) -> None:
        """The run ended and its end is recorded: the final info is saved, metrics flushed,
        the logger's ``end_run`` called. Fires for every run that started, however it ended.

        Args:
            ctx: the run's context; ``ctx.info`` holds the final status and end time.
            status: ``RunStatus.COMPLETE``, ``RunStatus.FAILED`` (the task raised, called
                ``sys.exit(n)`` with n != 0, or its metrics could not be written),
                ``RunStatus.INTERRUPTED`` (SIGINT, SIGTERM), ``RunStatus.TIMEOUT`` or
                ``RunStatus.PREEMPTED`` (the scheduler's warning signal).
        """

    @hookspec
    def mlxpy_on_run_error(self, ctx: Context, error: BaseException) -> None:
        """The task ended with an error, recorded in ``ctx.info.error`` and ``error.log``;
        fires before ``mlxpy_after_run`` and before the error propagates.

        Args:
            ctx: the run's context.
            error: what ended the task: an exception, ``SystemExit`` with a non-zero code,
                ``KeyboardInterrupt``, or :class:`mlxpy.RunInterrupted` (a signal).
        """

    @hookspec
    def mlxpy_on_run_signal(self, ctx: Context, signame: str, status: RunStatus) -> None:
        """The scheduler warned that the job is about to be stopped: the last chance to
        checkpoint before the run is recorded (and requeued when the scheduler's ``requeue``
        is on). Fires before ``mlxpy_on_run_error``.

        Args:
            ctx: the run's context.
            signame: the signal received, as the scheduler's ``warning_signals`` names it
                (``"SIGUSR1"``).
            status: ``RunStatus.TIMEOUT`` or ``RunStatus.PREEMPTED``, what the signal means.
        """


class LoggingSpecs:
    """Events after the selected logger stored something, fired by the core for any
    :class:`mlxpy.Logger` subclass (once per call, also when an override calls ``super()``),
    in the process that executes the task."""

    @hookspec
    def mlxpy_after_metrics_logged(
        self, ctx: Context, metrics: Mapping[str, Any], log_name: str, step: Any
    ) -> None:
        """``ctx.logger.log_metrics(metrics, log_name, step)`` returned.

        Args:
            ctx: the run's context.
            metrics: the metrics as the task passed them (not copied: do not change them).
            log_name: the metrics log they were appended to (``"train"``).
            step: the step given, or None.
        """

    @hookspec
    def mlxpy_after_artifact_logged(
        self, ctx: Context, name: str, artifact_type: str, path: str
    ) -> None:
        """``ctx.logger.log_artifacts(artifact, name, artifact_type)`` returned.

        Args:
            ctx: the run's context.
            name: the artifact's name.
            artifact_type: its type's name (``"pickle"``, ``"numpy"``, a plugin's type).
            path: where the logger stored it (a file path for DefaultLogger), as a string.
        """

    @hookspec
    def mlxpy_after_checkpoint_logged(self, ctx: Context, name: str, path: str) -> None:
        """``ctx.logger.log_checkpoint(checkpoint, name)`` returned: the checkpoint is stored
        (atomically, for DefaultLogger).

        Args:
            ctx: the run's context.
            name: the checkpoint's name (``"last_ckpt"``).
            path: where the logger stored it, as a string.
        """


class SchedulingSpecs:
    """Events around submitting jobs to a scheduler, in the launching process."""

    @hookspec
    def mlxpy_before_job_submit(self, job: ScheduledJob) -> None:
        """The job's run dir is claimed (status SUBMITTED) and its ``script.sh`` written; it
        is about to be submitted. Fires once per job, in submission order.

        Args:
            job: the job: ``log_id``, ``log_dir``, ``overrides``, ``name``, ``script_path``
                (``job_id`` is still None).
        """

    @hookspec
    def mlxpy_after_job_submit(self, job: ScheduledJob, job_id: str) -> None:
        """The scheduler accepted the job and its id is saved in the run info
        (``info.scheduler.job_id``). Does not fire for a job the scheduler refused (its run
        is then SUBMIT_FAILED).

        Args:
            job: the job, with ``job.job_id`` set.
            job_id: the scheduler's id of the job.
        """


class VersioningSpecs:
    """Events of the version manager, in the launching process."""

    @hookspec
    def mlxpy_after_workdir_created(self, info: Mapping[str, Any]) -> None:
        """The version manager froze the code; no job has run or been submitted from the
        copy yet. Fires once per launch (a sweep's jobs share the copy).

        Args:
            info: what the version manager recorded (its ``info``, saved as
                ``info.version_manager`` of each run): for GitVM ``commit``, ``branch``,
                ``snapshot_path``, ``dirty``, ...
        """


SPEC_CLASSES = (RegistrationSpecs, RunSpecs, LoggingSpecs, SchedulingSpecs, VersioningSpecs)
