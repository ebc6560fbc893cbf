"""The core side of adaptive sweeps that a sweeper plugin relies on: the objective read from
a run's metrics, the launch record that makes a job a sweep's worker, and telling a killed
worker's run from a live one. (End to end, with real workers: plugins/mlx_optuna/tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from mlxpy import ConfigError, Objective
from mlxpy.launching.record import LaunchRecord, LaunchRecordError, SchedulerChoice
from mlxpy.sweeping.worker import run_alive
from mlxpy.testing import ProjectDir


@pytest.mark.parametrize(
    ("text", "parsed", "direction"),
    [
        ("val.loss.min", ("val", "loss", "min"), "minimize"),
        ("train.acc.max", ("train", "acc", "max"), "maximize"),
        ("val.model.loss.last", ("val", "model.loss", "last"), None),
    ],
)
def test_objectives_name_a_log_a_key_and_a_reduction(text, parsed, direction):
    objective = Objective.parse(text)
    assert (objective.log, objective.key, objective.reduce) == parsed
    assert objective.direction == direction


@pytest.mark.parametrize("text", ["loss", "val.loss", "val.loss.mean", ".loss.min", "../x.min"])
def test_a_malformed_objective_says_how_to_write_one(text):
    with pytest.raises(ConfigError, match=r"<log>\.<key>\.<min\|max\|last>|invalid log name"):
        Objective.parse(text)


def test_the_objective_of_a_run_is_read_from_its_metric_log(tmp_path):
    project = ProjectDir(
        tmp_path / "p",
        """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    for step, loss in enumerate([3.0, 1.0, float("nan"), 2.0]):
        ctx.logger.log_metrics({"loss": loss, "flag": True}, step=step, log_name="val")

if __name__ == "__main__":
    task()
""",
    )
    project.write_config({"x": 1})
    assert project.run().returncode == 0
    (run_dir,) = project.run_dirs()
    assert Objective.parse("val.loss.min").of_run(run_dir) == 1.0
    assert Objective.parse("val.loss.max").of_run(run_dir) == 3.0
    assert Objective.parse("val.loss.last").of_run(run_dir) == 2.0  # NaN skipped
    assert Objective.parse("val.flag.min").of_run(run_dir) is None  # a bool is no objective
    assert Objective.parse("train.loss.min").of_run(run_dir) is None  # no such log


def test_a_launch_record_names_the_sweep_its_worker_works_for(tmp_path):
    record = LaunchRecord(
        "/p",
        "/p/configs",
        ["main.py"],
        scheduler=SchedulerChoice("LocalScheduler", {}),
        sweep_worker="20261201-171300-a1b2c3",
    )
    path = record.write(tmp_path / "launch.json")
    assert LaunchRecord.read(path) == record
    data = json.loads(path.read_text())
    data["sweep_worker"] = "../../etc"
    path.write_text(json.dumps(data))
    with pytest.raises(LaunchRecordError, match="sweep_worker must be a sweep id"):
        LaunchRecord.read(path)


def test_a_killed_runs_lock_tells_it_is_not_alive(tmp_path):
    project = ProjectDir(
        tmp_path / "p",
        """
import time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    print("started", flush=True)
    time.sleep(60)

if __name__ == "__main__":
    task()
""",
    )
    project.write_config({"x": 1})
    proc = subprocess.Popen(
        [sys.executable, str(project.root / "main.py")],
        cwd=project.root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        (run_dir,) = project.run_dirs()
        assert run_alive(run_dir)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while run_alive(run_dir):  # the kernel drops the lock with the process
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert project.info(run_dir)["status"] == "RUNNING"  # the record still says so
    assert not run_alive(tmp_path / "no-such-run")


def test_a_relaunch_leaves_a_trial_whose_worker_may_live(tmp_path):
    import socket

    from mlxpy.sweeping.sweeper import Trial
    from mlxpy.sweeping.worker import worker_may_live

    here = socket.gethostname()
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead = int(ended.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # on this host: its pid says, started or not
        assert worker_may_live(Trial(0, [], host=here, pid=live.pid), started=False)
        assert worker_may_live(Trial(0, [], host=here, pid=live.pid), started=True)
        assert not worker_may_live(Trial(0, [], host=here, pid=dead), started=False)
        live.kill()  # and not reaped (no wait): a zombie, which runs nothing
        deadline = time.monotonic() + 10
        while worker_may_live(Trial(0, [], host=here, pid=live.pid), started=True):
            assert time.monotonic() < deadline, "a killed, unreaped worker taken for alive"
            time.sleep(0.05)
    finally:
        live.kill()
        live.wait()
    # on another host: left until it has a run (then its run's heartbeat says)
    assert worker_may_live(Trial(0, [], host="elsewhere", pid=dead), started=False)
    assert not worker_may_live(Trial(0, [], host="elsewhere", pid=dead), started=True)
    # asked before workers were recorded: its run alone says
    assert not worker_may_live(Trial(0, []), started=False)
