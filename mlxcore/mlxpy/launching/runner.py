"""Runs one job: builds its context and logger, records its status, handles crashes."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from mlxpy.context import Config, Context, as_config
from mlxpy.distributed.detect import DistInfo, detect
from mlxpy.errors import LogDirError, MlxpyError, RunInterrupted, UnknownPluginError
from mlxpy.launching.options import Options
from mlxpy.launching.record import LaunchRecord, SchedulerChoice
from mlxpy.launching.rerun import take_rerun_of
from mlxpy.plugins import get_plugins
from mlxpy.plugins.component import build_component, check_settings
from mlxpy.rundir.info import describe_error, error_message, exit_status, finish, new_run_info
from mlxpy.rundir.status import RunStatus
from mlxpy.sweeping.progress import announce_run

COMPLETE, FAILED, INTERRUPTED = RunStatus.COMPLETE, RunStatus.FAILED, RunStatus.INTERRUPTED


@dataclass
class Job:
    """One run to execute: its composed config, effective options and overrides."""

    config: Config
    options: Options
    overrides: list[str] = field(default_factory=list)
    logger: Any = None
    version_manager: Any = None
    scheduler: Any = None
    sweep_id: str | None = None  # set when the job is a point of a sweep (its record's id)
    sweep_point: int | None = None  # the point's index in the sweep's manifest


def make_job(
    config: Config, options: Options, overrides: list[str], scheduled: SchedulerChoice | None = None
) -> Job:
    """Validate a job's options against the selected classes before anything runs, so a bad
    option fails the whole launch up front instead of half-way through a sweep.

    A job a scheduler started (``scheduled``: the scheduler of its launch record) neither
    submits nor freezes code again; its options show the scheduler that submitted it, and the
    scheduler block of ``mlxpy.yaml``, which may have changed since, is not read."""
    if scheduled is not None:
        options.data["scheduler"] = {"name": scheduled.name, **scheduled.settings}
        return Job(config, options, overrides, logger=make_component(options, "logger"))
    return Job(
        config,
        options,
        overrides,
        logger=make_component(options, "logger"),
        version_manager=make_component(options, "version_manager"),
        scheduler=make_component(options, "scheduler"),
    )


@dataclass
class RunOutcome:
    status: str
    log_id: Any = None
    result: Any = None
    error: BaseException | None = None
    duration: float = 0.0
    requeued: bool = False


class RunSignals:
    """While a task runs, SIGTERM, SIGINT and a scheduler's warning signals (``{name:
    status}``) raise in it (:class:`RunInterrupted`, or KeyboardInterrupt for SIGINT), so the
    run can record how it ended.

    Installed per run (never at import), only in the main thread, and kept until the run's
    end is recorded: a signal that arrives once the task's code is over (a repeat, or a first
    one during the task's return) is only noted, because raising there would leave the run
    RUNNING with its metrics unflushed. Each signal interrupts the task once: a scheduler
    may repeat its warning (every 10 s or so), and the repeat must not cut short the checkpoint the
    first one started.
    """

    def __init__(self, warning_signals: dict[str, str] | None = None) -> None:
        self.statuses = {"SIGTERM": INTERRUPTED, **(warning_signals or {})}
        self.armed = False
        self.raised: set[int] = set()
        self.noted: list[int] = []  # arrived while not armed, never raised
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> RunSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        names = list(self.statuses)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            names.append("SIGINT")  # a SIGINT handler of the program's own is left alone
        for name in names:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, old in self._previous.items():
            signal.signal(signum, old)
        self._previous.clear()

    def arm(self) -> None:
        """The task's code starts: signals raise from now on, one noted before at once."""
        self.armed = True
        if self.noted:
            self._raise(self.noted.pop(0))

    def disarm(self) -> None:
        """The task's code is over: signals are only noted until the record is written."""
        self.armed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.armed and signum not in self.raised:
            self._raise(signum)
        if signum not in self.raised and signum not in self.noted:
            self.noted.append(signum)

    def _raise(self, signum: int) -> NoReturn:
        self.raised.add(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        raise RunInterrupted(signum, name, self.statuses.get(name, INTERRUPTED))

    def late_stop(self) -> BaseException | None:
        """What a SIGINT or SIGTERM noted while the run recorded its end asks for, now that
        the record is written (a scheduler's warning then asks for nothing: the run is over)."""
        for signum in self.noted:
            if signum == signal.SIGINT:
                return KeyboardInterrupt()
            if signum == signal.SIGTERM:
                return RunInterrupted(signum, "SIGTERM", INTERRUPTED)
        return None


def act_on_early_warning(warning_signals: dict[str, str] | None) -> None:
    """A scheduler warning that reached the job script before mlxpy's handlers were
    installed is left as a note (see ``job_script``): act on it now, as if just received."""
    if not warning_signals:
        return
    from mlxpy.scheduling.job_script import WARNING_ENV  # only scheduled runs get here

    note = os.environ.get(WARNING_ENV)
    if not note:
        return
    try:
        with open(note) as handle:
            name = handle.read().strip()
    except OSError:
        return
    if name in warning_signals:
        raise RunInterrupted(getattr(signal, name), name, warning_signals[name])


def current_dist() -> DistInfo:
    """This process's rank, from its launcher's environment and what the installed
    schedulers read in theirs (the first one that recognizes its own job)."""
    task = None
    for cls in get_plugins().classes("scheduler"):  # Scheduler subclasses (checked at registration)
        task = cls.task_environment(os.environ)  # type: ignore[attr-defined]
        if task is not None:
            break
    return detect(os.environ, task)


def make_component(options: Options, role: str, force: bool = False) -> Any:
    """The selected, validated instance of ``role``, or None when its switch is off (its
    block is still validated, unless its plugin is not installed here)."""
    block = options.block(role)
    name = block.pop("name")
    where = f"{options.where(role + '.name')}: {role}.name"
    if not (force or options.enabled(role)):
        try:
            cls = get_plugins().resolve(role, name, where=where)
        except UnknownPluginError:  # e.g. a cluster's scheduler, not installed on a laptop
            return None
        check_settings(cls, role, block, options.settings_where(role))
        return None
    cls = get_plugins().resolve(role, name, where=where)
    return build_component(cls, role, block, options.settings_where(role))


class Run:
    """One job's run: :meth:`start` claims the run dir (errors there are setup errors, before
    any user code), :meth:`execute` runs the task and records how it ended."""

    def __init__(
        self,
        task: Callable[[Context], Any],
        job: Job,
        task_file: Path,
        seeding_function: Callable[[Any], Any] | None = None,
        record: LaunchRecord | None = None,
        job_scheduler: Any = None,
    ) -> None:
        self.task = task
        self.job = job
        self.seeding_function = seeding_function
        self.plugins = get_plugins()
        self.record = record
        self.run_files: dict[str, str] = dict(record.run_files) if record else {}
        self.info = new_run_info(
            str(task_file),
            record.project_dir if record else str(task_file.parent),
            job.overrides,
            self.plugins.versions(),
        )
        if record is not None:
            if record.version_manager:
                self.info.version_manager = record.version_manager
            # the command the user typed, not its re-run from the copy or the job script
            self.info.argv = list(record.argv)
            self.info.command = shlex.join([sys.executable, *record.argv])
        rerun_of = take_rerun_of()
        if rerun_of is not None:  # started by mlxpy rerun
            self.info.rerun_of = rerun_of
        sweep_id, point = job.sweep_id, job.sweep_point
        if record is not None and record.sweep_id is not None:  # a scheduled point
            sweep_id, point = record.sweep_id, record.sweep_point
        if sweep_id is not None:
            self.info.sweep_id, self.info.sweep_point = sweep_id, point
        self.dist = self._dist(point)
        self.info.rank, self.info.local_rank = self.dist.rank, self.dist.local_rank
        self.info.world_size = self.dist.world_size
        if self.dist.distributed:
            self.info.distributed = {"launcher": self.dist.launcher, "key": self.dist.key}
        self.ctx = Context(
            config=job.config,
            mlxpy=as_config(job.options.data),
            info=self.info,
            logger=job.logger,
            hook=self.plugins.hook,
            dist=self.dist,
        )
        self.job_scheduler = job_scheduler  # set when this process is a scheduled job
        # the run's selected instances, registered as plugins from start to the recorded end
        self._selection = contextlib.ExitStack()

    @staticmethod
    def _dist(point: int | None) -> DistInfo:
        """This process's rank in its job. Each point of a sweep the ranks run together is a
        job of its own: one run, joined under its own key."""
        dist = current_dist()
        if dist.distributed and point is not None:
            from dataclasses import replace

            dist = replace(dist, key=f"{dist.key}#point{point}")
        return dist

    def _select(self) -> None:
        """Register the run's logger, version manager and scheduler for the run's duration,
        so their hook methods fire. In a scheduled job the version manager that froze the
        code is switched off in the job's command: it is built again from its options."""
        vm = self.job.version_manager
        if vm is None and self.info.get("version_manager"):
            vm = make_component(self.job.options, "version_manager", force=True)
        self._selection.enter_context(
            self.plugins.selected(self.job.logger, vm, self.job_scheduler)
        )

    def start(self) -> None:
        self._select()  # first: a class with a misspelled hook fails before any run dir
        logger = self.job.logger
        if logger is None:
            return
        logger.ctx = self.ctx  # the logging hooks fire with it
        try:
            if self.record is not None and self.record.claim is not None:
                logger.adopt_claim(self.record.claim.log_dir)
            if self.dist.is_main:
                logger.start_run(self.ctx)
            else:  # the run rank 0 started: its files are rank 0's to write
                logger.join_run(self.ctx)
        except BaseException:
            self._selection.close()
            raise
        if not self.dist.is_main:
            return
        try:
            if self.job_scheduler is not None:
                self.info.scheduler = {
                    **(self.info.get("scheduler") or {}),
                    **self.job_scheduler.current_job(),
                }
            for name, text in self.run_files.items():
                logger.save_metadata_text(name, text)
            logger.save_info(dict(self.info))
            claimed_here = self.record is None or self.record.claim is None
            if self.info.get("sweep_id") is not None and claimed_here:
                self._journal()  # a submitted point was journaled when it was claimed
        except BaseException as error:
            # the run never started: stop its logger (ticker, lock, reserve), or a sweep's
            # next jobs would run beside a dead job's heartbeat that never goes stale
            self._selection.close()
            try:
                logger.end_run(self.ctx, str(FAILED))
            except Exception:
                pass
            if isinstance(error, OSError) and not isinstance(error, MlxpyError):
                raise LogDirError(
                    f"run {self.info.log_id} could not record its start in "
                    f"{self.info.log_dir}: {error}"
                ) from error
            raise

        announce_run(self.info.log_id, self.info.log_dir)

    def _journal(self) -> None:
        from mlxpy.sweeping.manifest import JournalEntry, append_journal

        info = self.info
        entry = JournalEntry(info.sweep_point, info.log_id, info.get("uid") or "")
        append_journal(Path(info.log_dir).parent, info.sweep_id, entry)

    def execute(self, reraise: bool = True) -> RunOutcome:
        """Run the task. With ``reraise`` its exception (or ``sys.exit(n)``) propagates after
        it is recorded; without, it is returned in the outcome, so one job of a sweep ends
        alone. Interruptions always propagate."""
        ctx, hook = self.ctx, self.plugins.hook
        started = time.monotonic()
        outcome = RunOutcome(status=COMPLETE, log_id=self.info.log_id)
        scheduler = self.job_scheduler
        warnings = scheduler.warning_signals if scheduler is not None else None
        with RunSignals(warnings) as signals:
            try:
                try:
                    signals.arm()
                    act_on_early_warning(warnings)
                    hook.mlxpy_before_run(ctx=ctx)
                    if self.seeding_function is not None:
                        self.seeding_function(ctx.config.get("seed"))
                    outcome.result = self.task(ctx)
                finally:
                    signals.disarm()
            except SystemExit as exc:  # sys.exit() in the task: its code decides
                if exc.code not in (None, 0):
                    outcome.status, outcome.error = FAILED, exc
            except BaseException as exc:  # record every way a run can end, then decide
                outcome.status = FAILED if isinstance(exc, Exception) else INTERRUPTED
                if isinstance(exc, RunInterrupted):
                    outcome.status = exc.status
                outcome.error = exc
            finally:
                failure = self._record_end(outcome, started)
        if outcome.requeued:  # last: the scheduler stops this process once the job is requeued
            self.job_scheduler.requeue_current_job()  # (rank 0's to ask, for the whole job)
        error = outcome.error
        if isinstance(error, (Exception, SystemExit)) and not reraise:
            error = None  # returned in the outcome
        if error is None:  # the caller would go on (the next job of a sweep): unless a stop
            error = signals.late_stop()  # came while this run was recording its end
        if isinstance(error, RunInterrupted):
            code = self.job_scheduler.requeue_exit_code if outcome.requeued else None
            raise SystemExit(128 + error.signum if code is None else code) from error
        if error is not None:
            raise error
        if failure is not None:  # the task succeeded but its record could not be written
            if reraise:
                raise failure
            if outcome.error is None:  # one job of a sweep: it fails alone, the sweep goes on
                outcome.status, outcome.error = FAILED, failure
        return outcome

    def _record_end(self, outcome: RunOutcome, started: float) -> Exception | None:
        """Record how the run ended. Each step is tried whatever the others do, so that one
        failing (a plugin's hook, a full disk) still leaves the status saved, the metrics
        flushed and the lock released, and never takes the place of the task's own
        exception: failures are printed, and the first one is returned."""
        ctx, logger, hook = self.ctx, self.job.logger, self.plugins.hook
        failures: list[Exception] = []
        unwritten: list[BaseException | None] = [None]

        def attempt(what: str, step: Callable[[], Any]) -> None:
            try:
                step()
            except Exception as exc:
                failures.append(exc)
                print(
                    f"mlxpy: warning: run {ctx.info.log_id}: could not {what}: "
                    f"{type(exc).__name__}: {error_message(exc)}",
                    file=sys.stderr,
                    flush=True,
                )

        if logger is not None:  # metrics that cannot be written (a full disk) fail the run
            attempt("write its metrics", lambda: unwritten.__setitem__(0, logger.finish_metrics()))
            if unwritten[0] is not None and outcome.error is None:
                outcome.status, outcome.error = FAILED, unwritten[0]
        error = outcome.error
        if error is not None:
            text = describe_error(ctx.info, error)
            if isinstance(error, SystemExit):
                ctx.info.exit_code = exit_status(error)
            elif isinstance(error, KeyboardInterrupt):
                ctx.info.interrupt_reason = "SIGINT"
            elif isinstance(error, RunInterrupted):
                ctx.info.interrupt_reason = error.signame
                if error.status != INTERRUPTED:
                    attempt(
                        "run the mlxpy_on_run_signal hooks",
                        lambda: hook.mlxpy_on_run_signal(
                            ctx=ctx, signame=error.signame, status=RunStatus(error.status)
                        ),
                    )
            if logger is not None:
                attempt("save error.log", lambda: logger.save_error(text))
            if self.dist.launcher == "torchelastic" and outcome.status == FAILED:
                from mlxpy.distributed.elastic import write_error_file

                kind, message = ctx.info.error["type"], ctx.info.error["message"]
                attempt(
                    "write torchrun's error file", lambda: write_error_file(kind, message, text)
                )
            attempt(
                "run the mlxpy_on_run_error hooks",
                lambda: hook.mlxpy_on_run_error(ctx=ctx, error=error),
            )
        outcome.duration = time.monotonic() - started
        finish(self.info, outcome.status, started, started + outcome.duration)
        outcome.requeued = self._wants_requeue(outcome.status)
        if outcome.requeued:
            self.info.requeued = True
        if logger is not None:
            attempt("save its info", lambda: logger.save_info(dict(self.info)))
            # in a distributed run, the run's status is the worst of its ranks' (merged in)
            outcome.status = str(self.info.get("status") or outcome.status)
            attempt("end its logging", lambda: logger.end_run(ctx, outcome.status))
        attempt(
            "run the mlxpy_after_run hooks",
            lambda: hook.mlxpy_after_run(ctx=ctx, status=RunStatus(outcome.status)),
        )
        attempt(
            "unregister its selected logger, scheduler and version manager", self._selection.close
        )
        return failures[0] if failures else None

    def _wants_requeue(self, status: str) -> bool:
        scheduler = self.job_scheduler
        if not (
            self.dist.is_main
            and scheduler is not None
            and scheduler.requeue
            and status in set(scheduler.warning_signals.values())
        ):
            return False
        try:
            return bool(scheduler.can_requeue_current_job())
        except Exception as error:  # a scheduler failing here must not cost the run's record
            print(
                f"mlxpy: warning: the job is not requeued: {scheduler.name} could not tell "
                f"whether it can be ({type(error).__name__}: {error})",
                file=sys.stderr,
            )
            return False
