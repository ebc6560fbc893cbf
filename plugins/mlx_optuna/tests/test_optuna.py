"""OptunaSweeper end to end: real launches, LocalScheduler workers (real processes sharing
the study's journal file), cancellation and resume, bad settings."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import mlxpy
import pytest
import yaml
from mlx_optuna.sweeper import OptunaSweeper
from mlxpy.scheduling.local import LocalScheduler, NotOurProcessWarning
from mlxpy.sweeping.manifest import SweepError
from mlxpy.testing import OBJECTIVE_TASK, ProjectDir

LRS = "lr=0.1,0.03,0.02,0.01,0.005,0.003,0.001"
LR_INTERVAL = "lr=tag(log, interval(1e-4,1e-1))"
SWEEP = ["+mlxpy.sweep.name=OptunaSweeper", "+mlxpy.sweep.objective=val.loss.min"]

#: OBJECTIVE_TASK, each trial taking ``sleep`` seconds
SLOW_TASK = OBJECTIVE_TASK.replace(
    "    lr = float(ctx.config.lr)\n",
    "    lr = float(ctx.config.lr)\n    import time; time.sleep(ctx.config.sleep)\n",
)


def local_project(root: Path, workers: int, task: str = OBJECTIVE_TASK) -> ProjectDir:
    project = ProjectDir(root, task)
    project.write_config({"lr": 0.1, "sleep": 0.0})
    project.write_config(
        {
            "use_scheduler": True,
            "scheduler": {"name": "LocalScheduler", "max_workers": workers},
        },
        "mlxpy.yaml",
    )
    return project


def infos(project: ProjectDir) -> list[dict]:
    out = []
    for run_dir in project.run_dirs():
        try:
            info = project.info(run_dir)
        except (OSError, yaml.YAMLError):  # being written
            info = None
        out.append(info if isinstance(info, dict) else {"status": "?"})
    return out


def worker_jobs(project: ProjectDir, sweep_id: str) -> list[str]:
    folder = project.logs / ".sweeps" / sweep_id / "workers"
    return [j for f in sorted(folder.glob("*/jobs.json")) for j in json.loads(f.read_text())]


def wait_workers(project: ProjectDir, sweep_id: str, timeout: float = 240) -> None:
    """Until every worker job of the sweep has ended (the LocalScheduler's own view)."""
    scheduler = LocalScheduler()
    deadline = time.monotonic() + timeout
    while True:
        ids = worker_jobs(project, sweep_id)
        states = scheduler.statuses(ids)
        if ids and all(s.phase == mlxpy.JobPhase.DONE for s in states.values()):
            return
        assert time.monotonic() < deadline, f"workers still running: {states}"
        time.sleep(0.3)


def study(project: ProjectDir, sweep_id: str) -> OptunaSweeper:
    sweeper = OptunaSweeper(trials=1, objective="val.loss.min")
    sweeper.open(project.logs / ".sweeps" / sweep_id, mlxpy.SearchSpace())
    return sweeper


def sweep_id_of(result) -> str:
    for line in result.stderr.splitlines():
        if line.startswith("[mlxpy] sweep "):
            return line.split()[2].rstrip(":")
    raise AssertionError(f"no sweep id printed: {result.stderr}")


def test_local_workers_run_exactly_the_trials(tmp_path):
    project = local_project(tmp_path / "proj", workers=3)
    start = time.monotonic()
    result = project.run(LR_INTERVAL, *SWEEP, "+mlxpy.sweep.trials=12", "+mlxpy.sweep.workers=3")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 30  # submitting returns without waiting
    assert "submitted 3 worker(s) to LocalScheduler" in result.stderr
    sweep_id = sweep_id_of(result)
    assert len(worker_jobs(project, sweep_id)) == 3  # one array of 3 tasks
    wait_workers(project, sweep_id)
    runs = infos(project)
    assert len(runs) == 12 and all(i["status"] == "COMPLETE" for i in runs), runs
    assert {i["sweep_id"] for i in runs} == {sweep_id}
    assert sorted(i["sweep_point"] for i in runs) == list(range(12))  # no trial twice
    journal = (project.logs / ".sweeps" / sweep_id / "points.jsonl").read_text().splitlines()
    assert len(journal) == 12, journal  # one line per trial, by the worker that claimed it
    jobs = {i["scheduler"]["job_id"] for i in runs}
    assert jobs <= set(worker_jobs(project, sweep_id)) and len(jobs) >= 2  # shared out
    frame = mlxpy.Reader(project.logs).filter(f"info.sweep_id == '{sweep_id}'")
    assert len(frame) == 12
    best = study(project, sweep_id).best()
    assert best is not None
    assert best["value"] == pytest.approx(frame["val.loss.min"].min())
    assert frame.loc[best["log_id"], "val.loss.min"] == pytest.approx(best["value"])
    assert frame.loc[best["log_id"], "info.sweep_point"] == best["number"]
    assert frame.loc[best["log_id"], "config.lr"] == pytest.approx(best["params"]["lr"])
    assert ((frame["config.lr"] >= 1e-4) & (frame["config.lr"] <= 1e-1)).all()
    assert frame["config.lr"].nunique() == 12  # drawn from the interval, not a list
    # each worker's output is under the sweep's folder
    outputs = list((project.logs / ".sweeps" / sweep_id / "workers").glob("*/*/job.stderr"))
    assert len(outputs) == 3
    assert sum(f.read_text().count(" COMPLETE log_id=") for f in outputs) == 12


def test_resume_after_cancellation_continues_to_exactly_the_trials(tmp_path):
    project = local_project(tmp_path / "proj", workers=3, task=SLOW_TASK)
    args = [LR_INTERVAL, *SWEEP, "+mlxpy.sweep.trials=12", "+mlxpy.sweep.workers=3", "sleep=1.0"]
    result = project.run(*args)
    assert result.returncode == 0, result.stderr
    sweep_id = sweep_id_of(result)
    deadline = time.monotonic() + 120
    while sum(i["status"] == "COMPLETE" for i in infos(project)) < 3:
        assert time.monotonic() < deadline, infos(project)
        time.sleep(0.2)
    running = [i for i in infos(project) if i["status"] == "RUNNING"]
    assert running, "no trial running to cancel"
    os.kill(running[0]["pid"], signal.SIGKILL)  # a worker killed without a word
    others = [str(i["log_id"]) for i in running[1:]]
    if others:  # the others cancelled as a user would
        cancelled = project.mlxpy("cancel", "-d", str(project.logs), *others)
        assert cancelled.returncode == 0, cancelled.stderr
    with warnings.catch_warnings():
        # the SIGKILLed worker may be a zombie its supervisor has not reaped yet: the
        # scheduler then declines to signal it, which is right
        warnings.simplefilter("ignore", NotOurProcessWarning)
        LocalScheduler().cancel(worker_jobs(project, sweep_id))  # one between two trials
    wait_workers(project, sweep_id)
    before = [i for i in infos(project) if i["status"] != "?"]
    done_before = [i for i in before if i["status"] == "COMPLETE"]
    assert 3 <= len(done_before) < 12
    assert any(i["status"] == "RUNNING" for i in before)  # the killed one: LOST to readers

    again = project.run(*args, "+mlxpy.sweep.resume=true")
    assert again.returncode == 0, again.stderr
    assert f"sweep {sweep_id}: continuing" in again.stderr
    # the killed worker's trial (and any a cancelled worker had asked but not started)
    lost = re.search(r"\((\d+) trial\(s\) of killed workers told LOST", again.stderr)
    assert lost and int(lost.group(1)) >= 1, again.stderr
    wait_workers(project, sweep_id)
    # a worker cancelled while claiming a run dir may leave it without a run info: no run
    after = [i for i in infos(project) if i["status"] != "?"]
    complete = [i for i in after if i["status"] == "COMPLETE"]
    assert len(complete) == 12, [(i["log_id"], i["status"]) for i in after]
    assert {i["sweep_id"] for i in after} == {sweep_id}
    points = [i["sweep_point"] for i in after]
    assert len(points) == len(set(points))  # every run its own trial number
    for old in done_before:  # finished trials untouched
        assert project.info(project.logs / str(old["log_id"]))["status"] == "COMPLETE"
    best = study(project, sweep_id).best()
    assert best is not None
    values = {
        i["log_id"]: mlxpy.read_metrics(project.logs / str(i["log_id"]) / "metrics" / "val.json")
        for i in complete
    }
    assert best["value"] == pytest.approx(min(min(r["loss"] for r in v) for v in values.values()))


def test_sequential_without_a_scheduler(tmp_path):
    project = ProjectDir(tmp_path / "proj", OBJECTIVE_TASK)
    project.write_config({"lr": 0.1})
    result = project.run(LRS, *SWEEP, "+mlxpy.sweep.trials=3", "+mlxpy.sweep.workers=4")
    assert result.returncode == 0, result.stderr
    assert "no scheduler, so one worker runs the trials here" in result.stderr
    assert [i["status"] for i in infos(project)] == ["COMPLETE"] * 3


def test_a_trial_that_fails_is_told_and_the_worker_goes_on(tmp_path):
    task = OBJECTIVE_TASK.replace(
        "    lr = float(ctx.config.lr)\n",
        "    lr = float(ctx.config.lr)\n    assert lr != 0.1, 'lr 0.1 fails'\n",
    )
    project = ProjectDir(tmp_path / "proj", task)
    project.write_config({"lr": 0.1})
    result = project.run(
        "lr=0.1,0.01", *SWEEP, "+mlxpy.sweep.trials=6", "+mlxpy.sweep.sampler=random"
    )
    statuses = [i["status"] for i in infos(project)]
    assert len(statuses) == 6  # a failed trial uses up its trial: no endless retries
    assert "FAILED" in statuses and "COMPLETE" in statuses, statuses
    assert result.returncode == 1
    assert f"{statuses.count('FAILED')} of 6 trials failed" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["+mlxpy.sweep.trials=3"], "needs the option(s) sweep.objective"),
        (
            ["+mlxpy.sweep.trials=3", "+mlxpy.sweep.objective=val.loss.last"],
            "set direction",
        ),
        (["+mlxpy.sweep.trials=3", "+mlxpy.sweep.objective=loss"], "is not an objective"),
        (
            [
                "+mlxpy.sweep.trials=3",
                "+mlxpy.sweep.objective=val.loss.min",
                "+mlxpy.sweep.resume=true",
            ],
            "no adaptive sweep of this command",
        ),
        (
            ["+mlxpy.sweep.trials=3", "+mlxpy.sweep.objective=val.loss.min"]
            + ["+mlxpy.logger.forced_log_id=7"],
            "forced_log_id cannot be used",
        ),
        (["+mlxpy.sweep.trials=0", "+mlxpy.sweep.objective=val.loss.min"], "at least 1"),
        (
            ["+mlxpy.sweep.trials=3", "+mlxpy.sweep.objective=val.loss.min"]
            + ["+mlxpy.sweep.sampler=grid"],
            "sampler must be one of tpe, random",
        ),
        (
            ["+mlxpy.sweep.trials=3", "+mlxpy.sweep.objective=val.loss.min"]
            + ["+mlxpy.sweep.pack=2"],
            "pack does not apply to OptunaSweeper",
        ),
    ],
)
def test_bad_settings_are_setup_errors(tmp_path, extra, message):
    project = ProjectDir(tmp_path / "proj", OBJECTIVE_TASK)
    project.write_config({"lr": 0.1})
    result = project.run(LRS, "+mlxpy.sweep.name=OptunaSweeper", *extra)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert project.run_dirs() == []


def test_a_changed_space_is_refused_on_resume(tmp_path):
    project = ProjectDir(tmp_path / "proj", OBJECTIVE_TASK)
    project.write_config({"lr": 0.1})
    first = project.run("lr=0.1,0.01", *SWEEP, "+mlxpy.sweep.trials=1")
    assert first.returncode == 0, first.stderr
    folder = project.logs / ".sweeps" / sweep_id_of(first)
    sweeper = OptunaSweeper(trials=1, objective="val.loss.min")
    space = mlxpy.SearchSpace([], [mlxpy.Choice("", "lr", ("0.5", "0.6"))])
    with pytest.raises(mlxpy.ConfigError, match="searches another space"):
        sweeper.open(folder, space)


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def chmod_tree(folder: Path, dirs: int, files: int) -> None:
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, dirs if path.is_dir() else files)


@pytest.fixture
def shared_tmp():
    """A temp dir every user may enter (pytest's own is its user's alone)."""
    root = Path(tempfile.mkdtemp(prefix="mlxpy-optuna-"))
    os.chmod(root, 0o755)
    yield root
    chmod_tree(root, 0o755, 0o644)
    shutil.rmtree(root)


def test_sweep_status_reads_the_study_and_writes_nothing(shared_tmp):
    project = ProjectDir(shared_tmp / "proj", OBJECTIVE_TASK)
    project.write_config({"lr": 0.1})
    result = project.run(LRS, *SWEEP, "+mlxpy.sweep.trials=3")
    assert result.returncode == 0, result.stderr
    sweep_id = sweep_id_of(result)
    folder = project.logs / ".sweeps" / sweep_id
    reader = OptunaSweeper(trials=3, objective="val.loss.min")
    reader.open(folder, mlxpy.SearchSpace(), read_only=True)
    expected = reader.best()
    assert expected is not None and expected["log_id"] is not None

    # a sweep dir its reader cannot write to: as another user when the tests run as root
    if os.geteuid() == 0:
        project.command_prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    before = tree(folder)
    chmod_tree(folder, 0o555, 0o444)
    try:
        status = project.mlxpy("sweep", "status", sweep_id, "--format", "json")
    finally:
        chmod_tree(folder, 0o755, 0o644)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["best"] == expected
    assert tree(folder) == before  # no lock file, no journal line

    # a sweep whose journal is gone: told so, and nothing created (even by a user who could)
    project.command_prefix = []
    (folder / "optuna.journal").unlink()
    before = tree(folder)
    status = project.mlxpy("sweep", "status", sweep_id)
    assert status.returncode == 0, status.stderr
    assert 'best: "(unavailable: SweepError: no Optuna study in' in status.stdout, status.stdout
    assert tree(folder) == before


def test_a_read_only_open_refuses_a_journal_over_256_mib(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    with open(folder / "optuna.journal", "wb") as f:
        f.truncate(256 * 1024**2 + 1)  # sparse: no disk used
    before = tree(folder)
    with pytest.raises(SweepError, match="more than the 268435456"):
        OptunaSweeper(trials=1, objective="val.loss.min").open(
            folder, mlxpy.SearchSpace(), read_only=True
        )
    assert tree(folder) == before


#: a logger that holds trial 0 between its ask and its run (the window in which the trial has
#: no run dir and no journal line) until the test creates the file ``go``
SLOW_START_LOGGER = """
import os, time
from pathlib import Path

from mlxpy.logger import DefaultLogger


class SlowStartLogger(DefaultLogger):
    def start_run(self, ctx):
        if ctx.info.get("sweep_point") == 0:
            Path("holding-0").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not Path("go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        super().start_run(ctx)
"""


def test_a_relaunch_leaves_a_live_workers_trial_that_has_no_run_yet(tmp_path):
    project = ProjectDir(tmp_path / "proj", OBJECTIVE_TASK)
    project.write_config({"lr": 0.1})
    project.write_config({"logger": {"name": "slow_start.SlowStartLogger"}}, "mlxpy.yaml")
    (project.root / "slow_start.py").write_text(SLOW_START_LOGGER)
    args = [LRS, *SWEEP, "+mlxpy.sweep.trials=3"]
    command = [sys.executable, str(project.root / "main.py"), *args]
    first = subprocess.Popen(
        command, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (project.root / "holding-0").exists():  # trial 0 asked, not started
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "trial 0 never asked"
            time.sleep(0.05)
        again = project.run(*args, "+mlxpy.sweep.resume=true")
        assert again.returncode == 0, again.stderr
        assert "told LOST" not in again.stderr  # the first worker lives: its trial is its own
        (project.root / "go").touch()
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err  # its tell found its trial still its own
    runs = infos(project)
    assert len(runs) == 3, runs  # exactly the trials: none asked again
    assert sorted(i["sweep_point"] for i in runs) == [0, 1, 2]
    assert all(i["status"] == "COMPLETE" for i in runs), runs
    assert [i["pid"] for i in runs if i["sweep_point"] == 0] == [first.pid]
