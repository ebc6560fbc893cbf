"""Schedulers submit jobs to a cluster. The base class holds the job-script options every
scheduler shares and defines the contract cluster plugins implement (SLURM, OAR, ...)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mlxpy.errors import MlxpyError
from mlxpy.plugins.component import Component
from mlxpy.rundir.layout import RunDir


class SubmissionError(MlxpyError):
    """The scheduler refused a job or could not be reached; carries its message."""


@dataclass(frozen=True)
class JobState:
    """What the scheduler says of one job."""

    state: str  # the scheduler's own word: PENDING, RUNNING, COMPLETED, FAILED, Terminated...
    exit_code: int | None = None
    reason: str | None = None
    signal: int | None = None
    cancelled: bool = False  # ended because a user cancelled it (scancel, oardel)
    current_job_id: str | None = None  # the job the scheduler resubmitted this one as


@dataclass
class ScheduledJob:
    """One run to submit: its pre-claimed log dir and the command that runs it."""

    log_id: Any
    log_dir: Path
    overrides: list[str]
    name: str
    script_path: Path | None = None
    job_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Scheduler(Component):
    """Base of job schedulers; ``scheduler.name: Scheduler`` selects it (it cannot submit).

    A cluster plugin sets ``directive_prefix`` and ``job_id_pattern`` and implements
    :meth:`submit`, :meth:`statuses` and :meth:`cancel`; arrays (:meth:`submit_array`) and
    requeue (:meth:`requeue_current_job`) are optional. These are every method and attribute
    the core uses.
    """

    role = "scheduler"
    name = "Scheduler"
    directive_prefix: ClassVar[str] = ""
    #: environment variable holding an array task's index inside the job, and its base
    array_index_var: ClassVar[str] = ""
    array_index_base: ClassVar[int] = 0
    #: signals the scheduler sends before killing a job, and the status they mean
    warning_signals: ClassVar[dict[str, str]] = {}
    #: exit status by which a job asks to be resubmitted (OAR's idempotent jobs: 99); None
    #: when :meth:`requeue_current_job` puts the job back itself (SLURM)
    requeue_exit_code: ClassVar[int | None] = None
    #: a regular expression every job id this scheduler gives matches: ``mlxpy status`` and
    #: ``mlxpy cancel`` pass only such ids to it (None: any id of digits, letters, ``._-``)
    job_id_pattern: ClassVar[str | None] = None
    #: whether a sweep goes as one array job, when the scheduler has arrays (a setting of
    #: the schedulers that do)
    use_arrays: bool = True
    #: whether a job that received a warning signal asks to run again (a setting of the
    #: schedulers that can requeue)
    requeue: bool = False

    def __init__(
        self,
        shell_path: str = "",
        shell_config_cmd: str = "",
        env_cmd: str = "",
        cleanup_cmd: str = "",
        option_cmd: list[str] | None = None,
    ) -> None:
        self.shell_path = shell_path or "/bin/bash"
        self.shell_config_cmd = shell_config_cmd
        self.env_cmd = env_cmd
        self.cleanup_cmd = cleanup_cmd
        self.option_cmd = list(option_cmd or [])
        self.calls = 0  # scheduler commands run by this instance (benchmarks, tests)

    def can_submit(self) -> bool:
        return type(self).submit is not Scheduler.submit

    # -- what a plugin implements ------------------------------------------------------
    def directives(self, job: ScheduledJob) -> list[str]:
        """Scheduler directives (without the prefix) of one job's script."""
        return list(self.option_cmd)

    def submit(self, script_path: Path) -> str:
        """Submit one job script; return the job id."""
        raise MlxpyError(
            f"scheduler '{self.name}' cannot submit jobs. Set scheduler.name in mlxpy.yaml to a "
            "cluster scheduler (SLURMScheduler from the mlxpy-slurm plugin, OARScheduler from "
            "mlxpy-oar), or use_scheduler: false."
        )

    def max_array_size(self) -> int:
        """How many tasks one array may hold; 0 when arrays are not supported."""
        return 0

    def submit_array(self, script_path: Path, count: int, first_job: ScheduledJob) -> list[str]:
        """Submit ``count`` tasks of one array script; return one job id per task."""
        raise NotImplementedError

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """The scheduler's state of each job, in **one** call to the scheduler."""
        raise NotImplementedError

    def cancel(self, job_ids: Sequence[str]) -> None:
        raise NotImplementedError

    def can_requeue_current_job(self) -> bool:
        """From inside a job, before its run is recorded as requeued: whether the
        scheduler will run it again. A plugin says False when its rules forbid it."""
        return (
            type(self).requeue_current_job is not Scheduler.requeue_current_job
            or self.requeue_exit_code is not None
        )

    def requeue_current_job(self) -> bool:
        """From inside a job, last thing before it exits: put it back in the queue. False
        when not possible."""
        return False

    def current_job(self) -> dict[str, Any]:
        """From inside a job: its ids as the scheduler's environment tells them."""
        return {}

    # -- helpers for plugins ------------------------------------------------------------
    @staticmethod
    def output_paths(job: ScheduledJob) -> tuple[str, str]:
        """Where a job's stdout and stderr go: its run dir, or the array's shared pattern."""
        shared = job.extra.get("stdout")
        return (
            shared or str(RunDir(job.log_dir).job_stdout),
            shared or str(RunDir(job.log_dir).job_stderr),
        )

    def call(self, args: Sequence[str], what: str) -> str:
        """Run one scheduler command (counted in ``calls``); return its stdout."""
        self.calls += 1
        return self.run_command(args, what).stdout

    @staticmethod
    def run_command(args: Sequence[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a scheduler command; a missing command or non-zero exit is a SubmissionError
        carrying the scheduler's own message."""
        try:
            result = subprocess.run(list(args), capture_output=True, text=True, **kwargs)
        except FileNotFoundError:
            raise SubmissionError(
                f"{what}: the command '{args[0]}' is not installed or not on PATH"
            ) from None
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip()
            raise SubmissionError(f"{what} failed (exit {result.returncode}): {message}")
        return result
