"""``@mlxpy.launch``: turns ``def task(ctx)`` into a managed experiment."""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from omegaconf import OmegaConf

from mlxpy.context import Config, as_config
from mlxpy.errors import ConfigError, DiskFullError, MlxpyError, MlxpyWarning
from mlxpy.launching.configs import (
    CONFIG_FILE,
    Composer,
    check_depth,
    check_flat,
    ensure_config_files,
)
from mlxpy.launching.options import (
    OPTIONS_FILE,
    Options,
    apply_override,
    read_options,
    validate_top_level,
)
from mlxpy.launching.overrides import (
    OPTIONS_PREFIX,
    parse_command_line,
    split_job,
    split_sweep_options,
)
from mlxpy.launching.record import LaunchRecord, SchedulerChoice, take_launch_record
from mlxpy.launching.relaunch import config_dir_for_jobs, freeze, relaunch_from_snapshot
from mlxpy.launching.runner import Job, Run, current_dist, make_job
from mlxpy.plugins import get_plugins
from mlxpy.rundir.location import resolve_parent_log_dir
from mlxpy.scheduling.submission import Submission
from mlxpy.sweeping.lock import RESUME_LOCK, SUBMIT_LOCK, SweepLock
from mlxpy.sweeping.manifest import SweepError, SweepManifest, SweepPoint, new_manifest
from mlxpy.sweeping.progress import (
    SweepProgress,
    counts_text,
    report_line,
    say,
    summary_line,
)
from mlxpy.sweeping.resume import PointCheck, ResumePlan, find_sweep, plan_resume
from mlxpy.sweeping.resume import counts as point_counts
from mlxpy.sweeping.space import SearchSpace, from_overrides, space_file_path
from mlxpy.sweeping.sweeper import Sweeper, make_sweeper
from mlxpy.sweeping.worker import run_adaptive

Task = Callable[..., Any]
#: how the summary counts a sweep's job that could not start (a setup error of its own)
NOT_STARTED = "NOT_STARTED"


def launch(
    config_path: str = "./configs", seeding_function: Callable[[Any], Any] | None = None
) -> Callable[[Task], Callable[..., Any]]:
    """Decorate ``def task(ctx)``; call ``task()`` to run it from the command line.

    ``config_path`` is relative to the file defining the task. ``seeding_function`` is called
    with ``config.seed`` before the task. ``task(config)`` (a dict or DictConfig) runs once with
    that config and no command-line parsing, for notebooks and tests.
    """

    def decorator(task: Task) -> Callable[..., Any]:
        task_file = Path(inspect.getfile(task)).resolve()
        config_dir = Path(config_path)
        if not config_dir.is_absolute():
            config_dir = task_file.parent / config_dir
        launcher = Launcher(task, task_file, config_dir, seeding_function)

        @functools.wraps(task)
        def wrapper(config: Any = None) -> Any:
            if config is not None:
                return launcher.run_with_config(config)
            return launcher.main(sys.argv[1:])

        wrapper.launcher = launcher  # type: ignore[attr-defined]
        return wrapper

    return decorator


@contextlib.contextmanager
def cli_warnings() -> Iterator[None]:
    """On the command line, mlxpy's own warnings print as one ``mlxpy: warning:`` line."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, MlxpyWarning):
            print(f"mlxpy: warning: {message}", file=sys.stderr, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


class Launcher:
    """Builds the jobs of one launch (config + options each) and runs them in turn."""

    def __init__(
        self,
        task: Task,
        task_file: Path,
        config_dir: Path,
        seeding_function: Callable[[Any], Any] | None,
    ) -> None:
        self.task = task
        self.task_file = task_file
        self.project_dir = task_file.parent
        self.config_dir = config_dir.resolve()
        self.seeding_function = seeding_function
        self.sweeper: Sweeper | None = None  # of the last build_jobs
        self.space = SearchSpace()  # of the last build_jobs
        self.sweep_options: list[Any] = []  # the mlxpy.sweep.* overrides of the last build
        self.points: list[list[str]] = []  # the planned points of the last build
        self.sweep_parent: Path | None = None  # where the launch's sweep is recorded
        self.sweep_lock: SweepLock | None = None  # held while this process runs a sweep
        self.point_check: PointCheck | None = None  # of a resume: each point before it runs

    def _options(self, option_overrides: list[Any]) -> Options:
        options_file = self.config_dir / OPTIONS_FILE
        options = read_options(options_file, display=str(options_file))
        for override in option_overrides:
            apply_override(options, override.path, override.value, override.kind, override.text)
        validate_top_level(options)
        return options

    def build_jobs(
        self, overrides: list[str], scheduled: SchedulerChoice | None = None
    ) -> list[Job]:
        self.plan(overrides)
        return self.jobs_for(list(enumerate(self.points)), scheduled)

    def plan(self, overrides: list[str], one_point: bool = False) -> list[Any]:
        """Read the sweep options and plan the launch's points (kept in ``self.points``, its
        sweeper in ``self.sweeper``, its space in ``self.space``); returns the sweep options.

        ``one_point``: the overrides are one point a submission planned (a scheduled job's
        command line): run as they are, neither expanded by the sweeper nor merged with a
        space file again (which may have changed since)."""
        ensure_config_files(self.config_dir)
        sweep_texts, point_texts = split_sweep_options(overrides)
        sweep_options = split_job(sweep_texts, self.config_dir).options
        self.sweeper = sweeper = make_sweeper(self._options(sweep_options))
        self.sweep_options = sweep_options
        if one_point:
            self.space = from_overrides(point_texts)
            self.points = [list(point_texts)]
            return sweep_options
        self.space = space = from_overrides(
            point_texts, space_file_path(sweeper.space, self.config_dir)
        )
        # an adaptive sweeper's points come one at a time from its workers
        self.points = [] if sweeper.adaptive else sweeper.points(space)
        return sweep_options

    def jobs_for(
        self, points: list[tuple[int, list[str]]], scheduled: SchedulerChoice | None = None
    ) -> list[Job]:
        """One job per ``(index, overrides)`` point of the last :meth:`plan`."""
        jobs = []
        composer = Composer(self.config_dir)
        with composer.session():
            for index, job_overrides in points:
                job = self.compose_job(composer, job_overrides, scheduled)
                job.sweep_point = index
                jobs.append(job)
        return jobs

    def compose_job(
        self, composer: Composer, job_overrides: list[str], scheduled: SchedulerChoice | None
    ) -> Job:
        """One job of the last :meth:`plan`'s launch, in a ``composer`` session."""
        split = split_job(job_overrides, self.config_dir)
        config = composer.compose(split.hydra, split.values, split.deletions)
        where = str(self.config_dir / CONFIG_FILE)
        if job_overrides:
            where += f" with the overrides {' '.join(job_overrides)}"
        self._check_config(config, where)
        options = self._options([*self.sweep_options, *split.options])
        return make_job(config, options, job_overrides, scheduled)

    def _check_config(self, config: Config, where: str) -> None:
        """What Hydra accepts but a run cannot keep or use, refused before anything runs."""
        data = cast(dict[str, Any], OmegaConf.to_container(config, resolve=True))
        check_flat(data, where)  # colliding dotted keys, too deep a nesting
        if OPTIONS_PREFIX in data:
            raise ConfigError(
                f"{where}: the key '{OPTIONS_PREFIX}' is reserved: framework options go in "
                f"{OPTIONS_FILE} beside {CONFIG_FILE}, or on the command line as "
                f"+{OPTIONS_PREFIX}.<option>=value; remove it from the config"
            )
        if self.seeding_function is not None and "seed" not in data:
            raise ConfigError(
                f"{where}: @mlxpy.launch was given a seeding_function, but the config has no "
                f"'seed' key to call it with; add 'seed: 0' to {CONFIG_FILE} or pass +seed=<n>"
            )

    def run_with_config(self, config: Any) -> Any:
        ensure_config_files(self.config_dir)
        where = "the config given to the task"
        if isinstance(config, dict):
            check_depth(config, where)
        config = as_config(config)
        self._check_config(config, where)
        job = make_job(config, self._options([]), [])
        run = self._run(job)
        run.start()
        return run.execute().result

    def main(self, argv: list[str]) -> Any:
        with cli_warnings():
            try:
                return self._main(argv)
            finally:
                if self.sweep_lock is not None:
                    self.sweep_lock.release()
                    self.sweep_lock = None

    def _main(self, argv: list[str]) -> Any:
        started = time.monotonic()
        try:
            current_dist()  # a launcher's inconsistent environment: a setup error, first
            record = take_launch_record()
            if record is not None:  # started by a launch: its record says where things are
                self.project_dir = Path(record.project_dir)
                self.config_dir = Path(record.config_dir)
            scheduled = record.scheduler if record is not None else None
            command = parse_command_line(argv)
            one_point = record is not None and record.claim is not None
            self.plan(command.overrides, one_point=one_point)
            assert self.sweeper is not None
            adaptive = self.sweeper.adaptive
            resume = None
            if self.sweeper.resume and scheduled is None and not adaptive:
                if current_dist().distributed:
                    raise ConfigError(
                        "sweep.resume cannot resume a sweep in place from the ranks of a "
                        "distributed job: each rank would plan the points left on its own. "
                        "Launch the points still to run (see mlxpy sweep status) as a new "
                        "sweep, or submit the sweep's jobs through a scheduler and resume "
                        "it with mlxpy sweep resume"
                    )
                if not (command.show_help or command.show_cfg):
                    resume = self._plan_resume()
            if resume is not None:
                points = [(p.index, p.overrides) for p in resume.todo]
            elif adaptive:  # one job of the fixed overrides: it carries the launch's options
                points = [(0, list(self.space.fixed))]
            else:
                points = list(enumerate(self.points))
            jobs = self.jobs_for(points, scheduled)
            if adaptive:
                jobs[0].sweep_point = None  # each trial is a point
            if resume is not None and not jobs:
                say(
                    f"[mlxpy] sweep {resume.manifest.sweep_id}: nothing to resume "
                    f"({counts_text(point_counts(resume.states))})"
                )
                return None
            if command.show_help:
                print(self.help_text(jobs[0]))
                return None
            if command.show_cfg:
                self.print_configs(jobs, command.show_cfg)
                return None
            if len(jobs) > 1 and any(
                j.options.data["logger"].get("forced_log_id", -1) >= 0 for j in jobs
            ):
                raise MlxpyError(
                    "logger.forced_log_id cannot be used with a sweep: every job needs its own "
                    "run directory. Remove the sweep or the forced id."
                )
            if adaptive:
                return run_adaptive(self, jobs[0], record, argv)
            if resume is not None:
                self._resume_in_own_dirs(jobs, resume)
            vm = jobs[0].version_manager
            # the launch's scheduler and version manager hear its events (freeze, submission)
            if jobs[0].scheduler is not None:
                with get_plugins().selected(jobs[0].scheduler, vm):
                    return self._submit(jobs, resume)
            if vm is not None and record is None:
                with get_plugins().selected(vm):
                    relaunch_from_snapshot(
                        vm,
                        self.task_file,
                        self.project_dir,
                        self.config_dir,
                        argv,
                        ignore=self._log_dirs(jobs),
                    )
            sweep = resume.manifest if resume is not None else self._new_sweep(jobs, record)
            job_scheduler = None
            if record is not None and record.scheduler is not None:
                job_scheduler = self._job_scheduler(record, jobs)
            if len(jobs) == 1 and sweep is None:
                run = self._run(jobs[0], record, job_scheduler)
                run.start()
        except MlxpyError as exc:
            print(f"mlxpy: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if len(jobs) == 1 and sweep is None:
            try:
                return run.execute().result
            except DiskFullError as exc:  # recorded in the run; one line, not a traceback
                print(f"mlxpy: error: {exc}", file=sys.stderr)
                raise SystemExit(1) from None
            finally:
                status = str(run.info.get("status"))
                if run.dist.is_main:  # the run's summary, once per job
                    say(summary_line({status: 1}, time.monotonic() - started))
        return self._run_sweep(jobs, record, sweep.sweep_id if sweep is not None else None)

    # -- the sweep record -----------------------------------------------------------------
    def _sweep_parent(self, job: Job) -> Path | None:
        """Where a job's runs go (absolute, as the logger resolves it), if it keeps run dirs."""
        parent = job.logger.parent_log_dir if job.logger is not None else None
        if not isinstance(parent, str) or not hasattr(job.logger, "forced_log_id"):
            return None
        return resolve_parent_log_dir(parent, self.project_dir).resolve()

    def _new_sweep(self, jobs: list[Job], record: LaunchRecord | None) -> SweepManifest | None:
        """Record a launch of more than one job as a sweep: its manifest under the first
        job's parent log dir, and its id in every job. None for one job, or jobs that keep
        no run dirs (no logger) or keep them in different parent dirs. In a distributed job
        the sweep is rank 0's: the other ranks join its runs."""
        if len(jobs) < 2 or not current_dist().is_main:
            return None
        parent = self._sweep_parent(jobs[0])
        if parent is None or any(self._sweep_parent(job) != parent for job in jobs[1:]):
            return None
        manifest = new_manifest(
            jobs[0].options,
            jobs[0].scheduler is not None,
            list(record.argv) if record is not None else list(sys.argv),
            self.project_dir,
            self.task_file,
            [SweepPoint(job.sweep_point or 0, list(job.overrides)) for job in jobs],
        )
        manifest.write(parent)
        self.sweep_parent = parent
        # a resume started meanwhile refuses, instead of running the same points again
        self.sweep_lock = SweepLock(parent, manifest.sweep_id, RESUME_LOCK, "run").acquire()
        for job in jobs:
            job.sweep_id = manifest.sweep_id
        return manifest

    def _plan_resume(self) -> ResumePlan | None:
        """The points of the sweep to resume (``sweep.resume``: true for the latest sweep of
        the same command, or a sweep id); None when this command has no sweep yet."""
        assert self.sweeper is not None
        which = self.sweeper.resume
        probe = self.jobs_for([(0, self.points[0] if self.points else [])])[0]
        parent = self._sweep_parent(probe)
        if parent is None:
            raise SweepError(
                "sweep.resume needs runs kept in run dirs: set use_logger: true and a logger "
                "that can resume a run (DefaultLogger or a subclass)"
            )
        manifest = find_sweep(parent, which, self.points, str(self.project_dir))
        if manifest is None:
            say(f"[mlxpy] no earlier sweep of this command in {parent}: starting it")
            return None
        self.sweep_parent = parent
        # one resume at a time: a second one would plan the same points and run them again
        self.sweep_lock = SweepLock(parent, manifest.sweep_id, RESUME_LOCK, "resumed").acquire()
        plan = plan_resume(parent, manifest, self.sweeper.only)
        self.point_check = PointCheck(plan)
        return plan

    @staticmethod
    def _resume_in_own_dirs(jobs: list[Job], resume: ResumePlan) -> None:
        """Each resumed point starts (or is submitted to resume) its own run dir; a missing
        point gets a new one."""
        log_ids = {state.index: state.log_id for state in resume.todo}
        for job in jobs:
            job.sweep_id = resume.manifest.sweep_id
            log_id = log_ids.get(job.sweep_point) if job.sweep_point is not None else None
            if log_id is not None:
                job.logger.forced_log_id = log_id
        say(
            f"[mlxpy] sweep {resume.manifest.sweep_id}: resuming {len(jobs)} of "
            f"{len(resume.states)} points ({counts_text(point_counts(resume.todo))})"
        )

    def _job_scheduler(self, record: LaunchRecord, jobs: list[Job]) -> Any:
        """In a job a scheduler started: the scheduler as it was when the job was submitted
        (from the launch record, not from ``mlxpy.yaml``, which may have changed since)."""
        assert record.scheduler is not None
        if record.claim is not None:
            logger = jobs[0].logger
            if len(jobs) != 1 or logger is None:
                raise MlxpyError(
                    f"this job was submitted to start run {record.claim.log_id} "
                    f"({record.claim.log_dir}), but its command line now makes {len(jobs)} "
                    "job(s) or it has no logger (use_logger in mlxpy.yaml must stay as it "
                    "was at submission)"
                )
        return record.scheduler.build(where="the launch record of this job")

    def _run_sweep(
        self, jobs: list[Job], record: LaunchRecord | None, sweep_id: str | None = None
    ) -> list[Any]:
        results: list[Any] = []
        failed = 0
        progress = SweepProgress(len(jobs), sweep_id)
        try:
            with progress:
                for number, job in enumerate(jobs, start=1):
                    if not self._still_due(job):
                        progress.total -= 1
                        results.append(None)
                        continue
                    run = self._run(job, record)
                    progress.job_started()
                    try:
                        run.start()
                    except MlxpyError as exc:  # this job cannot start; the others still can
                        failed += 1
                        results.append(None)
                        progress.job_ended(NOT_STARTED, f"mlxpy: error in job {number}: {exc}")
                        continue
                    try:
                        outcome = run.execute(reraise=False)
                    except BaseException:  # stopped (Ctrl-C, SIGTERM): the summary says so
                        progress.job_ended(str(run.info.get("status")))
                        raise
                    if outcome.error is not None:
                        progress.write("".join(traceback.format_exception(outcome.error)))
                        failed += 1
                    results.append(outcome.result)
                    progress.job_ended(
                        outcome.status,
                        f"[mlxpy] job {number}/{len(jobs)} {outcome.status} "
                        f"log_id={outcome.log_id} ({outcome.duration:.2f} s) "
                        f"{' '.join(job.overrides)}",
                    )
        finally:
            if failed:
                print(f"mlxpy: {failed} of {len(jobs)} jobs failed", file=sys.stderr)
            parent = self._sweep_parent(jobs[0]) if jobs else None
            if sweep_id and parent is not None:  # the summary stays the last line
                say(report_line(parent, sweep_id))
            say(progress.summary())
        if failed:
            raise SystemExit(1)
        return results

    def _still_due(self, job: Job) -> bool:
        """In a resume, whether a point is still to run just before it starts: one that
        another process ran since the plan (complete, or running now) is skipped; one it ran
        and left resumable is resumed in the dir it ran in."""
        if self.point_check is None or job.sweep_point is None:
            return True
        state = self.point_check.now(job.sweep_point, job.overrides)
        if not self.point_check.still_due(state):
            say(
                f"[mlxpy] point {state.index} skipped: it is {state.status} now (run "
                f"{state.log_id}), since the resume was planned"
            )
            return False
        if state.log_id is not None and job.logger is not None:
            job.logger.forced_log_id = state.log_id
        return True

    def _run(self, job: Job, record: LaunchRecord | None = None, job_scheduler: Any = None) -> Run:
        run = Run(self.task, job, self.task_file, self.seeding_function, record, job_scheduler)
        run.info.config_dir = str(self.config_dir)  # what mlxpy rerun reads again
        return run

    def _submit(self, jobs: list[Job], resume: ResumePlan | None = None) -> None:
        """Submit every job to the selected scheduler and return without waiting."""
        scheduler = jobs[0].scheduler
        vm = jobs[0].version_manager
        block = jobs[0].options.block("scheduler")
        choice = SchedulerChoice(block.pop("name"), block)
        script, workdir = self.task_file, Path.cwd()
        if vm is not None:
            script, record = freeze(
                vm, self.task_file, self.project_dir, self.config_dir, self._log_dirs(jobs)
            )
            workdir = script.parent
        else:
            record = LaunchRecord(
                project_dir=str(self.project_dir),
                config_dir=str(config_dir_for_jobs(self.config_dir, self.task_file, None)),
                argv=list(sys.argv),
            )
        sweep = resume.manifest if resume is not None else self._new_sweep(jobs, record)
        runs = [self._run(job, record) for job in jobs]
        submission = Submission(
            runs,
            scheduler,
            choice,
            script,
            workdir,
            record,
            use_arrays=scheduler.use_arrays,
            max_running=self.sweeper.max_running if self.sweeper else 0,
            pack=self.sweeper.pack if self.sweeper else 1,
        )
        submission.check_limits()  # before any run dir is claimed
        # held from the claim of the run dirs until their job ids are saved: points claimed
        # by a submitter killed meanwhile are then told SUBMIT_FAILED, not queued forever
        submitting = None
        if sweep is not None:
            assert self.sweep_parent is not None
            submitting = SweepLock(self.sweep_parent, sweep.sweep_id, SUBMIT_LOCK, "submitted")
            submitting.acquire()
        try:
            submission.prepare()
            try:
                submission.submit()
            finally:
                print(submission.table(), flush=True)
        finally:
            if sweep is not None:  # the job ids (and run dirs) of what was submitted
                self._record_submission(sweep, runs, choice)
            if submitting is not None:
                submitting.release()
        say(f"[mlxpy] submitted {len(jobs)} job(s) to {scheduler.name}")
        if sweep is not None:
            say(
                f"[mlxpy] sweep {sweep.sweep_id}: follow it with: mlxpy sweep status "
                f"{sweep.sweep_id} {self.sweep_parent}"
            )
        statuses = Counter(str(run.info.get("status")) for run in runs)
        say(summary_line(statuses, sweep_id=sweep.sweep_id if sweep else None, noun="job"))

    def _record_submission(self, sweep: SweepManifest, runs: list[Run], choice: Any) -> None:
        """Rewrite the manifest once, with each submitted point's run and job id."""
        for run in runs:
            point = run.job.sweep_point
            if point is None or not 0 <= point < len(sweep.points):
                continue
            if run.info.get("log_id") is not None:
                sweep.points[point].log_id = run.info.log_id
            job_id = (run.info.get("scheduler") or {}).get("job_id")
            if job_id is not None:
                sweep.points[point].job_id = str(job_id)
        sweep.scheduler = {"name": choice.name, "settings": dict(choice.settings)}
        assert self.sweep_parent is not None  # set with the sweep
        try:
            sweep.write(self.sweep_parent)
        except OSError as exc:
            warnings.warn(
                f"could not record the job ids in the manifest of sweep {sweep.sweep_id}: {exc}"
                " (the runs have them: mlxpy status)",
                MlxpyWarning,
                2,
            )

    def _log_dirs(self, jobs: list[Job]) -> list[str]:
        """Log dirs of the jobs (not code: the version manager must not snapshot them)."""
        dirs = set()
        for job in jobs:
            parent = job.logger.parent_log_dir if job.logger is not None else None
            if isinstance(parent, str):
                dirs.add(str(resolve_parent_log_dir(parent, self.project_dir)))
        return sorted(dirs)

    def print_configs(self, jobs: list[Job], which: str) -> None:
        for number, job in enumerate(jobs, start=1):
            if len(jobs) > 1:
                print(f"# job {number}/{len(jobs)}: {' '.join(job.overrides)}")
            if which in ("job", "all"):
                print(job.config)
            if which in ("mlxpy", "all"):
                print(as_config({"mlxpy": job.options.data}))

    def help_text(self, job: Job) -> str:
        groups = sorted(
            p.name for p in self.config_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        lines = [
            f"usage: python {Path(sys.argv[0]).name} [--help] [--cfg job|mlxpy|all] [OVERRIDE ...]",
            "",
            f"Runs '{self.task.__name__}' with the config composed from "
            f"{self.config_dir / CONFIG_FILE}.",
            "",
            "Overrides:  key=value (change)  +key=value (add or set)  ++key=value (force)  ~key",
            "            key=a,b,c (sweep: one run per combination)  group=option",
            "            mlxpy.<option>=value (framework options of mlxpy.yaml)",
        ]
        if groups:
            lines += ["", "Config groups: " + ", ".join(groups)]
        lines += ["", "Config:", str(job.config)]
        return "\n".join(lines)
