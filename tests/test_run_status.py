"""Run info, statuses and exit codes for success, exceptions, Ctrl-C and SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime

import mlxpy
import pytest

TASKS = """
import os, sys, time
import mlxpy

def seed_everything(seed):
    print(f"seeded with {seed}")

@mlxpy.launch(config_path="./configs", seeding_function=seed_everything)
def my_task(ctx):
    mode = ctx.config.mode
    print(f"status during run: {ctx.info.status} log_id={ctx.info['log_id']}", flush=True)
    if mode == "fail" or (mode == "fail_seed_2" and ctx.config.seed == 2):
        raise ValueError("boom in task")
    if mode == "sleep":
        with open(ctx.config.ready, "w") as fh:
            fh.write("ready")
        time.sleep(60)
    return mode

if __name__ == "__main__":
    my_task()
"""


@pytest.fixture
def tasks(project):
    project.write_main(TASKS)
    project.write_config("seed: 0\nmode: ok\nready: ''\n")
    return project


def test_success_records_run_info(tasks):
    result = tasks.run("seed=7")
    assert result.returncode == 0, result.stderr
    assert "seeded with 7" in result.stdout
    assert "status during run: RUNNING log_id=1" in result.stdout
    (run_dir,) = tasks.run_dirs()
    info = tasks.info(run_dir)
    assert info["status"] == "COMPLETE"
    start = datetime.fromisoformat(info["start_time"])
    end = datetime.fromisoformat(info["end_time"])
    assert start.tzinfo is not None and end >= start
    assert info["duration_s"] >= 0
    assert info["overrides"] == ["seed=7"]
    assert info["argv"][1:] == ["seed=7"] and "main.py seed=7" in info["command"]
    assert info["python_executable"] == sys.executable
    assert info["script_path"] == str(tasks.root / "main.py")
    assert info["cwd"] == str(tasks.cwd)
    assert info["log_id"] == 1 and info["log_dir"] == str(run_dir)
    assert info["mlxpy_version"] == mlxpy.__version__
    assert info["plugins"]["mlxpy"] == mlxpy.__version__
    assert info["pid"] > 0 and info["hostname"] and info["user"]
    assert sorted(p.name for p in (run_dir / "metadata").iterdir()) == [
        ".lock",
        "config.yaml",
        "heartbeat",
        "info.yaml",
        "mlxpy.yaml",
        "run.json",
    ]


def test_exception_is_recorded_and_reraised_with_true_traceback(tasks):
    result = tasks.run("mode=fail")
    assert result.returncode == 1
    assert "ValueError: boom in task" in result.stderr
    line_of_raise = TASKS.splitlines().index('        raise ValueError("boom in task")') + 1
    assert f'main.py", line {line_of_raise}, in my_task' in result.stderr
    (run_dir,) = tasks.run_dirs()
    info = tasks.info(run_dir)
    assert info["status"] == "FAILED"
    assert info["error"] == {"type": "ValueError", "message": "boom in task"}
    error_log = (run_dir / "metadata" / "error.log").read_text()
    assert "Traceback" in error_log and "boom in task" in error_log


def _start_and_wait_ready(tasks, ready):
    proc = tasks.popen("mode=sleep", f"ready={ready}")
    deadline = time.monotonic() + 30
    while not os.path.exists(ready):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "task never started"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("signum, reason", [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_interrupt_is_recorded_with_nonzero_exit(tasks, tmp_path, signum, reason):
    ready = tmp_path / "ready"
    proc = _start_and_wait_ready(tasks, ready)
    proc.send_signal(signum)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    if signum == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
    (run_dir,) = tasks.run_dirs()
    info = tasks.info(run_dir)
    assert info["status"] == "INTERRUPTED"
    assert info["interrupt_reason"] == reason
    assert info["end_time"] is not None


def test_failing_job_does_not_stop_the_sweep(tasks):
    result = tasks.run("mode=fail_seed_2", "seed=1,2,3")
    assert result.returncode == 1
    statuses = {tasks.config(r)["seed"]: tasks.info(r)["status"] for r in tasks.run_dirs()}
    assert statuses == {1: "COMPLETE", 2: "FAILED", 3: "COMPLETE"}
    assert "boom in task" in result.stderr
    assert "1 of 3 jobs failed" in result.stderr
    summary = [line for line in result.stderr.splitlines() if line.startswith("[mlxpy] job")]
    assert [line.split()[3] for line in summary] == ["COMPLETE", "FAILED", "COMPLETE"]


def test_task_called_with_a_config_skips_the_command_line(tasks, monkeypatch):
    import importlib.util

    from omegaconf import OmegaConf

    monkeypatch.setattr(sys, "argv", ["notebook", "seed=99"])  # must be ignored
    spec = importlib.util.spec_from_file_location("user_main", tasks.root / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.my_task({"seed": 3, "mode": "dict", "ready": ""}) == "dict"
    cfg = OmegaConf.create({"seed": 4, "mode": "dictconfig", "ready": ""})
    assert module.my_task(cfg) == "dictconfig"
    runs = tasks.run_dirs()
    assert [tasks.config(r)["seed"] for r in runs] == [3, 4]
    assert all(tasks.info(r)["status"] == "COMPLETE" for r in runs)
