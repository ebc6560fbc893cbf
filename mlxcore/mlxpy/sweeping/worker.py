"""An adaptive sweep: workers that ask the sweeper for a trial, run it as an ordinary run
(its own run dir, all the logging), tell it the objective and ask again, until the study has
all its trials. No worker waits for another; the study (in the sweep's folder, on the
filesystem every worker sees) is what they share.

The launching process writes the sweep's manifest (``adaptive: true``), tells the sweeper
that the trials a killed worker left running are LOST (so they are asked again; a trial whose
worker lives, even one not started as a run yet, is left: see :func:`worker_may_live`), then either
runs one worker itself (no scheduler: the trials run one after another in this process), or
submits ``workers`` workers to the scheduler as one array. A submitted worker learns its
sweep from its launch record (``sweep_worker``) and claims a run dir per trial: nothing is
claimed in advance. Each worker's output goes to ``.sweeps/<id>/workers/<launch>/<n>/``.

Relaunching with ``+mlxpy.sweep.resume=true`` continues the latest adaptive sweep of the
same command (the command without that override) instead of starting a new study;
``+mlxpy.sweep.resume=<sweep id>`` continues that one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlxpy.errors import ConfigError, MlxpyError
from mlxpy.launching.options import OPTIONS_FILE
from mlxpy.rundir.info import read_info
from mlxpy.rundir.layout import LAUNCH_RECORD, RunDir
from mlxpy.rundir.status import RunStatus
from mlxpy.sweeping.manifest import (
    SweepManifest,
    new_manifest,
    read_journal,
    sweep_dir,
    sweep_path,
)
from mlxpy.sweeping.objective import Objective
from mlxpy.sweeping.progress import say, summary_line
from mlxpy.sweeping.sweeper import Sweeper, Trial

if TYPE_CHECKING:
    from mlxpy.launching.launcher import Launcher
    from mlxpy.launching.record import LaunchRecord
    from mlxpy.launching.runner import Job

WORKERS_DIR = "workers"
RESUME_OVERRIDE = "mlxpy.sweep.resume"


def run_adaptive(launcher: Launcher, job: Job, record: LaunchRecord | None, argv: list[str]) -> Any:
    """The launch of an adaptive sweep (``job``: its options and fixed overrides), or, in a
    submitted worker (its record names the sweep), that worker's loop."""
    sweeper = launcher.sweeper
    assert sweeper is not None and sweeper.adaptive
    parent = _parent_log_dir(launcher, job, sweeper)
    if job.options.data["logger"].get("forced_log_id", -1) >= 0:
        raise ConfigError(
            f"logger.forced_log_id cannot be used with sweep.name: {sweeper.name}: every "
            "trial needs its own run directory. Remove the forced id."
        )
    if record is not None and record.sweep_worker is not None:
        return work(launcher, record, parent, record.sweep_worker)
    vm = job.version_manager
    if job.scheduler is None and vm is not None and record is None:
        from mlxpy.launching.relaunch import relaunch_from_snapshot
        from mlxpy.plugins import get_plugins

        with get_plugins().selected(vm):  # execs the same command from the frozen copy
            relaunch_from_snapshot(
                vm,
                launcher.task_file,
                launcher.project_dir,
                launcher.config_dir,
                argv,
                ignore=[str(parent)],
            )
    sweep_id = _start_sweep(launcher, job, record, parent, sweeper)
    if job.scheduler is not None:
        from mlxpy.plugins import get_plugins

        with get_plugins().selected(job.scheduler, vm):
            submit_workers(launcher, job, parent, sweep_id, sweeper.workers, argv)
        return None
    if sweeper.workers > 1:
        print(
            f"[mlxpy] sweep {sweep_id}: no scheduler, so one worker runs the trials here, one "
            f"after another (workers={sweeper.workers} needs a scheduler: "
            "use_scheduler: true with LocalScheduler or a cluster's)",
            file=sys.stderr,
            flush=True,
        )
    return work(launcher, record, parent, sweep_id)


def _parent_log_dir(launcher: Launcher, job: Job, sweeper: Sweeper) -> Path:
    from mlxpy.rundir.location import resolve_parent_log_dir

    logger = job.logger
    parent = getattr(logger, "parent_log_dir", None)
    if logger is None or not isinstance(parent, str):
        raise ConfigError(
            f"sweep.name: {sweeper.name} runs each trial as a run with its own run dir: it "
            f"needs a logger with a parent_log_dir (DefaultLogger); set use_logger: true in "
            f"{OPTIONS_FILE}"
        )
    return resolve_parent_log_dir(parent, launcher.project_dir)


def _start_sweep(
    launcher: Launcher, job: Job, record: LaunchRecord | None, parent: Path, sweeper: Sweeper
) -> str:
    """The id of the sweep this launch runs: a new one (its manifest written), or with
    ``resume`` the latest adaptive sweep of the same command, whose dead trials are told
    LOST."""
    user_argv = list(record.argv) if record is not None else list(sys.argv)
    which: Any = sweeper.resume
    if which:
        if isinstance(which, str):  # a sweep id (what mlxpy sweep resume <id> passes)
            sweep_id = which
            if not SweepManifest.read(parent, sweep_id).adaptive:
                raise ConfigError(
                    f"+{RESUME_OVERRIDE}={sweep_id}: that sweep plans its points, it has no "
                    f"study for {sweeper.name} to continue"
                )
        else:
            found = latest_adaptive_sweep(parent, user_argv, str(launcher.project_dir))
            if found is None:
                raise ConfigError(
                    f"+{RESUME_OVERRIDE}=true: no adaptive sweep of this command under "
                    f"{parent} to continue; list them with: mlxpy sweeps {parent}, or launch "
                    f"without +{RESUME_OVERRIDE}=true to start a new one"
                )
            sweep_id = found
        sweeper.open(sweep_dir(parent, sweep_id), launcher.space)
        lost = reap(sweeper, parent, sweep_id)
        note = f" ({lost} trial(s) of killed workers told LOST, asked again)" if lost else ""
        print(
            f"[mlxpy] sweep {sweep_id}: continuing its study in {sweep_dir(parent, sweep_id)}"
            + note,
            file=sys.stderr,
            flush=True,
        )
        return sweep_id
    manifest = new_manifest(
        job.options,
        job.scheduler is not None,
        user_argv,
        launcher.project_dir,
        launcher.task_file,
        adaptive=True,
    )
    manifest.write(parent)
    sweep_id = manifest.sweep_id
    sweeper.open(sweep_dir(parent, sweep_id), launcher.space)  # the study exists from now on
    print(
        f"[mlxpy] sweep {sweep_id}: {sweeper.name}, study in {sweep_dir(parent, sweep_id)}",
        file=sys.stderr,
        flush=True,
    )
    return sweep_id


def latest_adaptive_sweep(parent: Path, argv: list[str], project_dir: str) -> str | None:
    """The newest adaptive sweep under ``parent`` launched with the same command (the rule
    of :func:`mlxpy.sweeping.resume.find_adaptive_sweep`)."""
    from mlxpy.sweeping.resume import find_adaptive_sweep

    return find_adaptive_sweep(parent, argv, project_dir)


def run_alive(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` is RUNNING with a live process (the rule of
    :func:`mlxpy.sweeping.resume.run_is_alive`)."""
    from mlxpy.sweeping.resume import run_is_alive

    info = read_info(run_dir)
    if not isinstance(info, dict) or info.get("status") != RunStatus.RUNNING.value:
        return False
    return run_is_alive(info, run_dir)


def reap(sweeper: Sweeper, parent: Path, sweep_id: str) -> int:
    """Tell the sweeper LOST every trial it still counts as running whose run is not alive
    and whose worker is gone (killed, or died before claiming the trial's run dir); returns
    how many. Run by a relaunch, before its workers start; the old workers may still run."""
    journal = read_journal(parent, sweep_id)
    lost = 0
    for trial in sweeper.running():
        entry = journal.get(trial.number)
        if entry is not None:
            trial.log_id = entry.log_id
            if run_alive(parent / str(entry.log_id)):
                continue
        if worker_may_live(trial, started=entry is not None):
            continue
        sweeper.tell(trial, None, RunStatus.LOST)
        lost += 1
    return lost


def worker_may_live(trial: Trial, started: bool) -> bool:
    """Whether the worker that asked ``trial`` (its ``host`` and ``pid``) may still run it:
    on this host, while that pid lives (it is between asking and telling: composing the
    trial, claiming its run dir, or telling its result); on another host, whose processes
    cannot be seen from here, only until the trial has a run (``started``), whose heartbeat
    then tells. A trial recorded without its worker is judged by its run alone."""
    from mlxpy.sweeping.resume import pid_alive

    if trial.host is None or trial.pid is None:
        return False
    if trial.host == socket.gethostname():
        return pid_alive(trial.pid) and not _zombie(trial.pid)
    if not started:
        print(
            f"[mlxpy] trial {trial.number}, asked by pid {trial.pid} on {trial.host}, has no "
            "run yet: left to that worker (its host's processes are not visible here)",
            file=sys.stderr,
            flush=True,
        )
    return not started


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has ended and waits for its parent to reap it (Linux; elsewhere
    False): signalling it still succeeds, yet it runs nothing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(4096)
    except OSError:
        return False
    return stat.rpartition(b")")[2].split()[:1] == [b"Z"]


def work(launcher: Launcher, record: LaunchRecord | None, parent: Path, sweep_id: str) -> Any:
    """One worker: ask, run, tell, until the sweeper has no more trials. A trial that fails
    is told FAILED and the worker goes on; an interruption (SIGTERM, a time limit) is told
    and ends the worker. Exits 1 when a trial it ran failed."""
    from mlxpy.launching.configs import Composer

    sweeper = launcher.sweeper
    assert sweeper is not None
    sweeper.open(sweep_dir(parent, sweep_id), launcher.space)
    objective = Objective.parse(sweeper.objective)
    scheduled = record.scheduler if record is not None else None
    job_scheduler = None
    if scheduled is not None:
        job_scheduler = scheduled.build(where="the launch record of this sweep worker")
    composer = Composer(launcher.config_dir)
    ran = failed = 0
    ended: Counter[str] = Counter()
    started = time.monotonic()
    with _sigterm_raises():
        while (trial := sweeper.ask()) is not None:
            ran += 1
            status = _run_trial(launcher, composer, trial, record, job_scheduler, parent, sweep_id)
            ended[str(status)] += 1
            failed += _tell(sweeper, objective, trial, status, parent, sweep_id)
    say(summary_line(ended, time.monotonic() - started, sweep_id, noun="trial"))
    if failed:
        print(f"mlxpy: {failed} of {ran} trials failed", file=sys.stderr)
        raise SystemExit(1)
    return None


def _tell(
    sweeper: Sweeper,
    objective: Objective,
    trial: Trial,
    status: RunStatus,
    parent: Path,
    sweep_id: str,
) -> int:
    """Tell the sweeper how a trial ended, with its objective; 1 when it failed."""
    value = None
    if status is RunStatus.COMPLETE and trial.log_id is not None:
        value = objective.of_run(parent / str(trial.log_id))
        if value is None:
            print(
                f"mlxpy: warning: trial {trial.number} (run {trial.log_id}) logged no "
                f"{objective.key!r} in the metric log {objective.log!r} "
                f"(sweep.objective: {sweeper.objective}): it is told failed",
                file=sys.stderr,
                flush=True,
            )
    sweeper.tell(trial, value, status)
    print(
        f"[mlxpy] sweep {sweep_id} trial {trial.number} {status} log_id={trial.log_id} "
        f"{objective.log}.{objective.key}={value} {' '.join(trial.overrides)}",
        file=sys.stderr,
        flush=True,
    )
    return 0 if status is RunStatus.COMPLETE and value is not None else 1


def _run_trial(
    launcher: Launcher,
    composer: Any,
    trial: Trial,
    record: LaunchRecord | None,
    job_scheduler: Any,
    parent: Path,
    sweep_id: str,
) -> RunStatus:
    """Run one trial as an ordinary run; its status. An interruption (before the run, or in
    it) is told, as the run recorded it (INTERRUPTED when it has no record yet), then
    raised: the study asks another trial in its place."""
    scheduled = record.scheduler if record is not None else None
    run = None
    try:
        try:
            with composer.session():
                job = launcher.compose_job(composer, trial.overrides, scheduled)
            run = launcher._run(job, record, job_scheduler)
            run.info.sweep_id = sweep_id
            run.info.sweep_point = trial.number
            if scheduled is not None:  # mlxpy status and cancel reach the worker's job by it
                run.info.scheduler = {"name": scheduled.name, "settings": dict(scheduled.settings)}
            run.start()
        except MlxpyError as exc:  # this trial cannot start; the next one still may
            print(f"mlxpy: error in trial {trial.number}: {exc}", file=sys.stderr, flush=True)
            return RunStatus.FAILED
        log_id = run.info.log_id  # run.start() journaled it (the run has a sweep_id)
        if log_id is not None:
            trial.log_id = int(log_id)
        outcome = run.execute(reraise=False)
    except BaseException:
        recorded = run.info.get("status") if run is not None else None
        status = RunStatus(recorded or RunStatus.INTERRUPTED.value)
        if status in (RunStatus.RUNNING, RunStatus.COMPLETE, RunStatus.FAILED):
            status = RunStatus.INTERRUPTED
        try:
            sweeper = launcher.sweeper
            assert sweeper is not None
            sweeper.tell(trial, None, status)
        except BaseException as exc:  # the interruption is what matters now
            print(f"mlxpy: warning: trial {trial.number} not told: {exc!r}", file=sys.stderr)
        raise
    if outcome.error is not None:
        traceback.print_exception(outcome.error, file=sys.stderr)
    return RunStatus(outcome.status)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Between trials, SIGTERM (a cancelled worker) raises SystemExit instead of killing the
    worker on the spot, so that a lock it holds is released and the trial it asked is told;
    in a run, the run's own handlers take over (and put this one back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def submit_workers(
    launcher: Launcher, job: Job, parent: Path, sweep_id: str, count: int, argv: list[str]
) -> list[str]:
    """Submit ``count`` workers of the sweep: one array when the scheduler has arrays, else
    one job each. Each runs the launch's own command; its launch record says which sweep it
    works for. Returns the job ids (also written to the launch's ``jobs.json``)."""
    from mlxpy.launching.record import ENV_VAR, LaunchRecord, SchedulerChoice
    from mlxpy.launching.relaunch import config_dir_for_jobs, freeze
    from mlxpy.rundir.atomic import atomic_write_text
    from mlxpy.scheduling import job_script
    from mlxpy.scheduling.base import ScheduledJob

    scheduler, vm = job.scheduler, job.version_manager
    if not scheduler.can_submit():
        scheduler.submit(launcher.task_file)  # raises the explanation
    block = job.options.block("scheduler")
    choice = SchedulerChoice(block.pop("name"), block)
    script, workdir = launcher.task_file, Path.cwd()
    if vm is not None:
        script, base = freeze(
            vm, launcher.task_file, launcher.project_dir, launcher.config_dir, [str(parent)]
        )
        workdir = script.parent
    else:
        base = LaunchRecord(
            project_dir=str(launcher.project_dir),
            config_dir=str(config_dir_for_jobs(launcher.config_dir, launcher.task_file, None)),
            argv=list(sys.argv),
        )
    probe = ScheduledJob(log_id=None, log_dir=parent, overrides=list(argv), name="worker")
    if scheduler.task_launcher(probe):
        raise ConfigError(
            f"an adaptive sweep runs one worker process per job, which asks for a trial, runs "
            f"it and asks again; {scheduler.name}'s jobs here have several tasks, which would "
            "start one worker per task. Give the sweep's jobs one task (drop ntasks/nodes > 1 "
            "from the scheduler options), or sweep distributed jobs with a planned sweep (a "
            "grid, or samples=N)"
        )
    folder = sweep_path(parent, sweep_id, WORKERS_DIR, _stamp())  # never through a link
    folder.mkdir(parents=True)
    record_path = replace(base, scheduler=choice, sweep_worker=sweep_id).write(
        folder / LAUNCH_RECORD
    )
    command = [sys.executable, str(script), *argv]
    env = {ENV_VAR: str(record_path)}
    jobs = []
    for number in range(count):
        worker = ScheduledJob(
            log_id=None,
            log_dir=folder / str(number),
            overrides=list(argv),
            name=f"{script.stem}-sweep-{number}",
        )
        worker.log_dir.mkdir()
        worker.script_path = RunDir(worker.log_dir).job_script
        text = job_script.run_script(scheduler, worker, command, workdir, env)
        atomic_write_text(worker.script_path, text)
        os.chmod(worker.script_path, 0o755)
        jobs.append(worker)
    if count >= 2 and scheduler.use_arrays and scheduler.max_array_size() >= count:
        array = ScheduledJob(
            log_id=None,
            log_dir=folder,
            overrides=[],
            name=f"{script.stem}-sweep",
            extra={"array": True, "stdout": str(folder / "array.%a.out")},
        )
        path = folder / "array.sh"
        atomic_write_text(path, job_script.array_script(scheduler, array, jobs))
        os.chmod(path, 0o755)
        ids = list(scheduler.submit_array(path, count, array))
    else:  # one job each, its output in its folder (the scheduler's directives say so)
        ids = []
        for worker in jobs:
            assert worker.script_path is not None
            ids.append(scheduler.submit(worker.script_path))
    atomic_write_text(folder / "jobs.json", json.dumps(ids) + "\n")
    print(
        f"[mlxpy] sweep {sweep_id}: submitted {count} worker(s) to {scheduler.name} "
        f"({', '.join(ids)}); their output is in {folder}; follow it with: mlxpy status "
        f"{parent}",
        file=sys.stderr,
        flush=True,
    )
    return ids


def _stamp() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
