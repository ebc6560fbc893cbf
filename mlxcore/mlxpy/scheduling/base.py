"""Schedulers submit jobs to a cluster. The base class holds the job-script options every
scheduler shares and defines the contract scheduler plugins implement; each scheduler
translates its own job states into a :class:`JobPhase`, so the core knows no scheduler's
vocabulary."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from mlxpy.distributed.detect import SchedulerTask
from mlxpy.errors import MlxpyError
from mlxpy.plugins.component import Component
from mlxpy.rundir.layout import RunDir


class SubmissionError(MlxpyError):
    """The scheduler refused a job or could not be reached; carries its message."""


class JobPhase(str, Enum):
    """Where a job is in its life, whatever the scheduler calls it: what ``mlxpy status``
    reconciles a run's own record with. Each scheduler maps its states to one of these."""

    #: waiting to start, or to start again (pending, held, requeued, resubmitted)
    QUEUED = "QUEUED"
    #: started and not over (also while it is being set up, suspended, or completing)
    RUNNING = "RUNNING"
    #: over for good: :attr:`JobState.exit_code` and :attr:`JobState.cancelled` say how
    DONE = "DONE"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class JobState:
    """What the scheduler says of one job: its own word for the state (shown to users) and
    what that word means (:class:`JobPhase`, what mlxpy acts on)."""

    state: str  # the scheduler's own word, as its tools print it
    phase: JobPhase
    exit_code: int | None = None
    reason: str | None = None
    signal: int | None = None
    cancelled: bool = False  # DONE because a user cancelled it
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

    A scheduler plugin sets ``directive_prefix`` and ``job_id_pattern`` and implements
    :meth:`submit`, :meth:`statuses` (its states as :class:`JobState`, each with its
    :class:`JobPhase`) and :meth:`cancel`; arrays (:meth:`submit_array`), requeue
    (:meth:`requeue_current_job`), ``reserved_directives`` and, for jobs of several processes,
    :meth:`task_setup` and :meth:`task_launcher` are optional. These are every method and
    attribute the core uses.
    """

    role = "scheduler"
    name = "Scheduler"
    #: how the directive lines of this scheduler's job scripts start (a shell comment such as
    #: ``#XYZ``); also how ``mlxpsub`` tells that a batch script is meant for this scheduler
    directive_prefix: ClassVar[str] = ""
    #: the directive options mlxpy sets itself in every job script (job name, output paths,
    #: arrays, ...): option -> why, and what to write instead. ``mlxpsub`` refuses a batch
    #: script whose directives set one, with that text. A long option (``--name``) matches
    #: up to its ``=``, a short one (``-n``) its first two characters (``-nvalue``)
    reserved_directives: ClassVar[dict[str, str]] = {}
    #: a regular expression every job id this scheduler gives matches: ``mlxpy status`` and
    #: ``mlxpy cancel`` pass it no other id read from a run dir (None: any id of
    #: :data:`mlxpy.scheduling.status.JOB_ID`'s shape)
    job_id_pattern: ClassVar[str | None] = None
    #: environment variable holding an array task's index inside the job, and its base
    array_index_var: ClassVar[str] = ""
    array_index_base: ClassVar[int] = 0
    #: signals the scheduler sends before killing a job, and the status they mean
    warning_signals: ClassVar[dict[str, str]] = {}
    #: exit status by which a job asks the scheduler to resubmit it; None when
    #: :meth:`requeue_current_job` puts the job back itself
    requeue_exit_code: ClassVar[int | None] = None
    #: whether a sweep goes as one array job, when the scheduler has arrays (a setting of
    #: the schedulers that do)
    use_arrays: bool = True
    #: whether a job that received a warning signal asks to run again (a setting of the
    #: schedulers that can requeue)
    requeue: bool = False
    #: whether :meth:`submit_array` takes ``max_running`` (at most that many of the array's
    #: tasks run at once) and ``after`` (start only once those jobs ended, however they ended)
    can_throttle_arrays: ClassVar[bool] = False
    #: whether :meth:`submit` takes ``after`` (start only once those jobs ended): what limits
    #: a sweep's running jobs when arrays cannot
    can_wait_for_jobs: ClassVar[bool] = False

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
        return self.can_submit_jobs()

    @classmethod
    def can_submit_jobs(cls) -> bool:
        """Whether this class implements :meth:`submit` (the base class does not)."""
        return cls.submit is not Scheduler.submit

    # -- what a plugin implements ------------------------------------------------------
    def directives(self, job: ScheduledJob) -> list[str]:
        """Scheduler directives (without the prefix) of one job's script."""
        return list(self.option_cmd)

    def submit(self, script_path: Path) -> str:
        """Submit one job script; return the job id. A scheduler with
        :attr:`can_wait_for_jobs` also takes ``after: Sequence[str]``: the ids of jobs that
        must end (however they end) before this one starts."""
        raise MlxpyError(
            f"scheduler '{self.name}' cannot submit jobs. Set scheduler.name in mlxpy.yaml to "
            f"one that can ({submitting_schedulers()}), install a scheduler plugin, or set "
            "use_scheduler: false."
        )

    def max_array_size(self) -> int:
        """How many tasks one array may hold; 0 when arrays are not supported."""
        return 0

    def submit_array(self, script_path: Path, count: int, first_job: ScheduledJob) -> list[str]:
        """Submit ``count`` tasks of one array script; return one job id per task. A
        scheduler with :attr:`can_throttle_arrays` also takes ``max_running: int`` and
        ``after: Sequence[str]`` (keywords, passed only when set; ``after`` holds every task
        id of the array to wait for)."""
        raise NotImplementedError

    def max_submitted_jobs(self) -> int | None:
        """How many more jobs this user may submit now (the cluster's cap on submitted
        jobs, less those already queued); None when there is no cap or it cannot be read.
        An array task counts as one job."""
        return None

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """The scheduler's state of each job it knows, in **one** call to the scheduler; a
        job it has forgotten is left out."""
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

    @classmethod
    def task_environment(cls, env: Mapping[str, str]) -> SchedulerTask | None:
        """What this scheduler's environment ``env`` says about a process running in one of
        its jobs (any job, submitted by mlxpy or not): the job's identity, its requeues, and
        the process's rank when the scheduler's task launcher started it as one of several
        tasks. None outside this scheduler's jobs (the default). mlxpy reads it to tell
        the ranks of a distributed job apart and to key their joining one run."""
        return None

    def task_setup(self, job: ScheduledJob, command: Sequence[str]) -> list[str]:
        """Shell lines a job's script runs just before it starts the task ``command`` (in
        the task's directory and environment): what the task's processes need to find each
        other, such as :meth:`rendezvous_exports`. None by default; a scheduler returns
        some only for a job that starts several processes."""
        return []

    def task_launcher(self, job: ScheduledJob) -> list[str]:
        """Words put before the task's command in a job's script: the scheduler's own
        launcher, starting one process per task of the job. It must pass the job's
        :attr:`warning_signals` on to those processes (the script sends them to it); each
        process starts with them ignored until mlxpy's handlers are in place, as a task the
        script starts itself does. Empty by default: the script starts the task itself."""
        return []

    # -- helpers for plugins ------------------------------------------------------------
    @staticmethod
    def output_paths(job: ScheduledJob) -> tuple[str, str]:
        """Where a job's stdout and stderr go: its run dir, or the array's shared pattern."""
        shared = job.extra.get("stdout")
        return (
            shared or str(RunDir(job.log_dir).job_stdout),
            shared or str(RunDir(job.log_dir).job_stderr),
        )

    @staticmethod
    def rendezvous_exports(first_host: str, job_id: str, python: str) -> list[str]:
        """Shell lines exporting ``MASTER_ADDR`` and ``MASTER_PORT``, where the processes of
        a distributed job meet (torch.distributed's ``env://``). Values the job inherited
        (a scheduler exports the submitting shell's environment) are replaced: a port fixed
        there would be every job's, an address the login node's. The
        address is the output of the shell command ``first_host``; the port is derived from
        the job id (the shell expression ``job_id``, an integer), ``17000 + id % 15000`` (below
        the usual ephemeral range, so two jobs sharing a node differ unless their ids are
        15000 apart), then the next one up while ``python`` cannot bind it, up to 50 ports:
        the script must run on the first host, where rank 0 will listen."""
        probe = 'import socket,sys; socket.socket().bind(("", int(sys.argv[1])))'
        bind = f'{shlex.quote(python)} -c {shlex.quote(probe)} "$port" 2>/dev/null'
        return [
            f"MASTER_ADDR=$({first_host})",
            "export MASTER_ADDR",
            f"first_port=$((17000 + ({job_id}) % 15000)); MASTER_PORT=",
            'for port in $(seq "$first_port" $((first_port + 49))); do',
            f"  if {bind}; then MASTER_PORT=$port; break; fi",
            "done",
            'if [ -z "$MASTER_PORT" ]; then',
            '  echo "mlxpy: ports $first_port-$((first_port + 49)) are all in use here;'
            ' MASTER_PORT=$first_port" >&2',
            "  MASTER_PORT=$first_port",
            "fi",
            "export MASTER_PORT",
        ]

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


def submitting_schedulers() -> str:
    """The installed schedulers that can submit jobs, by name, from the plugin registry."""
    from mlxpy.plugins import get_plugins

    registry = get_plugins()
    names = []
    for name in registry.available("scheduler"):
        try:
            cls = registry.resolve("scheduler", name)
            if issubclass(cls, Scheduler) and cls.can_submit_jobs():
                names.append(name)
        except MlxpyError:  # a name several plugins provide: still installed
            names.append(name)
    return "installed: " + (", ".join(names) if names else "none")
