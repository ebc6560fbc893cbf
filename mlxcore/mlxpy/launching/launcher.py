"""``@mlxpy.launch``: turns ``def task(ctx)`` into a managed experiment."""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import traceback
import warnings
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
from mlxpy.launching.runner import Job, Run, make_job
from mlxpy.plugins import get_plugins
from mlxpy.rundir.location import resolve_parent_log_dir
from mlxpy.scheduling.submission import Submission
from mlxpy.sweeping.space import from_overrides, space_file_path
from mlxpy.sweeping.sweeper import Sweeper, make_sweeper

Task = Callable[..., Any]


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
        ensure_config_files(self.config_dir)
        sweep_texts, point_texts = split_sweep_options(overrides)
        sweep_options = split_job(sweep_texts, self.config_dir).options
        self.sweeper = sweeper = make_sweeper(self._options(sweep_options))
        space = from_overrides(point_texts, space_file_path(sweeper.space, self.config_dir))
        jobs = []
        composer = Composer(self.config_dir)
        with composer.session():
            for job_overrides in sweeper.points(space):
                split = split_job(job_overrides, self.config_dir)
                config = composer.compose(split.hydra, split.values, split.deletions)
                where = str(self.config_dir / CONFIG_FILE)
                if job_overrides:
                    where += f" with the overrides {' '.join(job_overrides)}"
                self._check_config(config, where)
                options = self._options([*sweep_options, *split.options])
                jobs.append(make_job(config, options, job_overrides, scheduled))
        return jobs

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
            return self._main(argv)

    def _main(self, argv: list[str]) -> Any:
        try:
            record = take_launch_record()
            if record is not None:  # started by a launch: its record says where things are
                self.project_dir = Path(record.project_dir)
                self.config_dir = Path(record.config_dir)
            scheduled = record.scheduler if record is not None else None
            command = parse_command_line(argv)
            jobs = self.build_jobs(command.overrides, scheduled)
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
            vm = jobs[0].version_manager
            # the launch's scheduler and version manager hear its events (freeze, submission)
            if jobs[0].scheduler is not None:
                with get_plugins().selected(jobs[0].scheduler, vm):
                    return self._submit(jobs)
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
            job_scheduler = None
            if record is not None and record.scheduler is not None:
                job_scheduler = self._job_scheduler(record, jobs)
            if len(jobs) == 1:
                run = self._run(jobs[0], record, job_scheduler)
                run.start()
        except MlxpyError as exc:
            print(f"mlxpy: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if len(jobs) == 1:
            try:
                return run.execute().result
            except DiskFullError as exc:  # recorded in the run; one line, not a traceback
                print(f"mlxpy: error: {exc}", file=sys.stderr)
                raise SystemExit(1) from None
        return self._run_sweep(jobs, record)

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

    def _run_sweep(self, jobs: list[Job], record: LaunchRecord | None) -> list[Any]:
        results: list[Any] = []
        failed = 0
        for number, job in enumerate(jobs, start=1):
            run = self._run(job, record)
            try:
                run.start()
            except MlxpyError as exc:  # this job cannot start; the others still can
                print(f"mlxpy: error in job {number}: {exc}", file=sys.stderr)
                failed += 1
                results.append(None)
                continue
            outcome = run.execute(reraise=False)
            if outcome.error is not None:
                traceback.print_exception(outcome.error, file=sys.stderr)
                failed += 1
            results.append(outcome.result)
            print(
                f"[mlxpy] job {number}/{len(jobs)} {outcome.status} log_id={outcome.log_id} "
                f"({outcome.duration:.2f} s) {' '.join(job.overrides)}",
                file=sys.stderr,
                flush=True,
            )
        if failed:
            print(f"mlxpy: {failed} of {len(jobs)} jobs failed", file=sys.stderr)
            raise SystemExit(1)
        return results

    def _run(self, job: Job, record: LaunchRecord | None = None, job_scheduler: Any = None) -> Run:
        return Run(self.task, job, self.task_file, self.seeding_function, record, job_scheduler)

    def _submit(self, jobs: list[Job]) -> None:
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
        submission = Submission(
            [self._run(job, record) for job in jobs],
            scheduler,
            choice,
            script,
            workdir,
            record,
            use_arrays=scheduler.use_arrays,
            max_running=self.sweeper.max_running if self.sweeper else 0,
            pack=self.sweeper.pack if self.sweeper else 1,
        )
        submission.check_limits()
        submission.prepare()
        try:
            submission.submit()
        finally:
            print(submission.table(), flush=True)
        print(f"[mlxpy] submitted {len(jobs)} job(s) to {scheduler.name}", file=sys.stderr)

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
