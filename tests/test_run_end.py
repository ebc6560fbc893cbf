"""How a run ends when the end is rough: signals that repeat or arrive while the run records
its end, exceptions that cannot be printed, ``sys.exit(n)`` in one job of a sweep. Each test
runs a real ``python main.py`` and reads what the run left on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlxpy.rundir.info import read_yaml
from mlxpy.rundir.layout import RunDir
from mlxpy.rundir.metrics import read_metrics
from mlxpy.testing import ProjectDir

ROWS = 20_000

TASK = """
import sys, time
import mlxpy


class Unprintable(Exception):
    def __str__(self):
        raise TypeError("no str() for this one")


@mlxpy.launch(config_path="./configs")
def task(ctx):
    c = ctx.config
    for step in range(c.rows):
        ctx.logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    if c.x == c.exit_on:
        sys.exit(c.exit_code)
    if c.mode == "surrogate":
        raise ValueError("bad \\udcff")
    if c.mode == "unprintable":
        raise Unprintable()
    if c.mode == "fail":
        raise RuntimeError("plain failure")
    if c.mode == "sleep":
        with open(c.ready, "w") as handle:
            handle.write("ready")
        time.sleep(60)
    return c.mode


if __name__ == "__main__":
    task()
"""

# Selected by its dotted path: a DefaultLogger that lingers just before it records the run's
# end, so a test can send signals exactly while the run is finishing.
SLOW_LOGGER = """
import os, time
import mlxpy


class SlowLogger(mlxpy.DefaultLogger):
    def save_info(self, info):
        if info["status"] != "RUNNING":
            with open(os.environ["FINISHING_MARK"], "w") as handle:
                handle.write(info["status"])
            time.sleep(1.0)
        super().save_info(info)
"""


@pytest.fixture
def project(tmp_path: Path) -> ProjectDir:
    project = ProjectDir(tmp_path / "proj", TASK)
    project.write_config(
        {
            "seed": 0,
            "mode": "ok",
            "rows": 0,
            "ready": str(tmp_path / "ready"),
            "x": 0,
            "exit_on": -1,
            "exit_code": 0,
        }
    )
    # Everything stays buffered until the run ends: only the end of the run can save it.
    project.write_config(
        {"logger": {"name": "DefaultLogger", "flush_every": 10**9, "flush_interval_s": 1000.0}},
        "mlxpy.yaml",
    )
    (project.root / "slowlog.py").write_text(SLOW_LOGGER)
    project.env = {"FINISHING_MARK": str(tmp_path / "finishing")}
    return project


def popen(project: ProjectDir, *args: str) -> subprocess.Popen:
    """``ProjectDir.run``, without waiting, so the test can signal the run."""
    return subprocess.Popen(
        [*project.command_prefix, sys.executable, str(project.root / "main.py"), *args],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **project.env},
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def send(proc: subprocess.Popen, signum: int, count: int, gap_s: float) -> None:
    for number in range(count):
        if number:
            time.sleep(gap_s)
        if proc.poll() is None:
            proc.send_signal(signum)


def recorded(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's info as ``info.yaml`` and as ``run.json`` have it."""
    run = RunDir(run_dir)
    info = read_yaml(run.info)
    run_json = json.loads(run.run_json.read_text())["info"]
    return info, run_json


def steps(run_dir: Path) -> list[int]:
    return [record["step"] for record in read_metrics(RunDir(run_dir).metrics_file("train"))]


# -- signals while the run records its end ---------------------------------------------------


@pytest.mark.parametrize(
    "signum, count, gap_s",
    [
        (signal.SIGTERM, 2, 0.005),  # scancel, then the shell's kill
        (signal.SIGTERM, 5, 0.002),  # a burst
        (signal.SIGINT, 2, 0.005),  # Ctrl-C pressed twice
    ],
    ids=["sigterm-twice", "sigterm-burst", "sigint-twice"],
)
def test_repeated_signals_do_not_cut_the_record_short(project, tmp_path, signum, count, gap_s):
    proc = popen(project, "mode=sleep", f"rows={ROWS}")
    wait_for(tmp_path / "ready", proc)
    send(proc, signum, count, gap_s)
    _, stderr = proc.communicate(timeout=60)
    (run_dir,) = project.run_dirs()
    info, run_json = recorded(run_dir)
    name = signal.Signals(signum).name
    assert info["status"] == run_json["status"] == "INTERRUPTED", stderr
    assert info["interrupt_reason"] == run_json["interrupt_reason"] == name
    assert info["end_time"] is not None
    assert steps(run_dir) == list(range(ROWS))
    # SIGTERM: mlxpy exits 143, or, for a signal that comes after the record is written and
    # the handler restored, the default action ends the process (the shell shows 143 too);
    # SIGINT: the process ends as Python does on Ctrl-C.
    expected = {143, -signal.SIGTERM} if signum == signal.SIGTERM else {-signal.SIGINT}
    assert proc.returncode in expected, stderr


@pytest.mark.parametrize(
    "first, then",
    [
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGINT, signal.SIGTERM),
    ],
    ids=["sigterm", "sigint", "sigint-then-sigterm"],
)
def test_signals_while_the_interruption_is_recorded(project, tmp_path, first, then):
    """The same as above, without depending on timing: the later signals land exactly
    while the first one's end is being saved."""
    proc = popen(project, "mode=sleep", f"rows={ROWS}", "+mlxpy.logger.name=slowlog.SlowLogger")
    wait_for(tmp_path / "ready", proc)
    proc.send_signal(first)
    wait_for(Path(project.env["FINISHING_MARK"]), proc)
    send(proc, then, 3, 0.005)
    _, stderr = proc.communicate(timeout=60)
    (run_dir,) = project.run_dirs()
    info, run_json = recorded(run_dir)
    assert info["status"] == run_json["status"] == "INTERRUPTED", stderr
    assert info["interrupt_reason"] == signal.Signals(first).name
    assert steps(run_dir) == list(range(ROWS))
    assert proc.returncode == (143 if first == signal.SIGTERM else -signal.SIGINT), stderr


@pytest.mark.parametrize("count", [1, 3])
def test_sigterm_while_the_run_is_finishing(project, count):
    """The task has returned; the signal arrives while its end is being recorded. The run
    is recorded COMPLETE (its work is done), with every row, then the process honours the
    signal: exit status 143."""
    proc = popen(project, "mode=ok", f"rows={ROWS}", "+mlxpy.logger.name=slowlog.SlowLogger")
    mark = Path(project.env["FINISHING_MARK"])
    wait_for(mark, proc)
    send(proc, signal.SIGTERM, count, 0.005)
    _, stderr = proc.communicate(timeout=60)
    (run_dir,) = project.run_dirs()
    info, run_json = recorded(run_dir)
    assert info["status"] == run_json["status"] == "COMPLETE", stderr
    assert steps(run_dir) == list(range(ROWS))
    assert proc.returncode == 143, stderr


def test_sigterm_while_a_failed_run_is_finishing(project):
    """A failure being recorded is not cut short either, and the user's exception is what
    the process reports."""
    proc = popen(project, "mode=fail", "rows=300", "+mlxpy.logger.name=slowlog.SlowLogger")
    wait_for(Path(project.env["FINISHING_MARK"]), proc)
    send(proc, signal.SIGTERM, 2, 0.005)
    _, stderr = proc.communicate(timeout=60)
    (run_dir,) = project.run_dirs()
    info, run_json = recorded(run_dir)
    assert info["status"] == run_json["status"] == "FAILED", stderr
    assert info["error"] == {"type": "RuntimeError", "message": "plain failure"}
    assert "plain failure" in (run_dir / "metadata" / "error.log").read_text()
    assert steps(run_dir) == list(range(300))
    assert proc.returncode == 1
    assert stderr.rstrip().splitlines()[-1] == "RuntimeError: plain failure"


def test_sigterm_while_finishing_stops_a_sweep(project):
    """A sweep asked to stop while its first job finishes records that job and starts no
    other."""
    proc = popen(project, "x=1,2,3", "rows=100", "+mlxpy.logger.name=slowlog.SlowLogger")
    wait_for(Path(project.env["FINISHING_MARK"]), proc)
    send(proc, signal.SIGTERM, 2, 0.005)
    _, stderr = proc.communicate(timeout=60)
    (run_dir,) = project.run_dirs()
    info, run_json = recorded(run_dir)
    assert info["status"] == run_json["status"] == "COMPLETE", stderr
    assert steps(run_dir) == list(range(100))
    assert proc.returncode == 143, stderr


# -- exceptions that cannot be printed --------------------------------------------------------


@pytest.mark.parametrize(
    "mode, error_type, message",
    [
        ("surrogate", "ValueError", "bad \\udcff"),
        ("unprintable", "Unprintable", "<str() raised TypeError>"),
    ],
)
def test_unprintable_exception_is_recorded_and_reraised(project, mode, error_type, message):
    result = project.run(f"mode={mode}", "rows=300")
    assert result.returncode == 1, result.stderr
    last_line = result.stderr.rstrip().splitlines()[-1]
    assert last_line.split(":")[0].endswith(error_type), result.stderr  # the user's exception
    (run_dir,) = project.run_dirs()
    info, run_json = recorded(run_dir)
    assert info["status"] == run_json["status"] == "FAILED"
    assert info["error"] == run_json["error"] == {"type": error_type, "message": message}
    error_log = (run_dir / "metadata" / "error.log").read_text()
    assert "Traceback" in error_log and error_type in error_log
    assert steps(run_dir) == list(range(300))
    assert "Traceback" in result.stderr and "mlxpy" not in last_line


# -- sys.exit(n) --------------------------------------------------------------------------------


def test_sys_exit_in_one_job_of_a_sweep_ends_only_that_job(project):
    result = project.run("x=1,2,3", "exit_on=2", "exit_code=3", "rows=10")
    assert result.returncode == 1, result.stderr
    runs = {project.config(d)["x"]: d for d in project.run_dirs()}
    assert sorted(runs) == [1, 2, 3]
    statuses = {x: recorded(d)[0]["status"] for x, d in runs.items()}
    assert statuses == {1: "COMPLETE", 2: "FAILED", 3: "COMPLETE"}
    info, run_json = recorded(runs[2])
    assert info["exit_code"] == run_json["exit_code"] == 3
    assert run_json["status"] == "FAILED"
    assert all(steps(d) == list(range(10)) for d in runs.values())
    assert "1 of 3 jobs failed" in result.stderr
    summary = [line for line in result.stderr.splitlines() if line.startswith("[mlxpy] job")]
    assert [line.split()[3] for line in summary] == ["COMPLETE", "FAILED", "COMPLETE"]


@pytest.mark.parametrize("code, exit_status", [("3", 3), ("bye", 1), ("0", 0)])
def test_sys_exit_in_a_single_run_keeps_its_exit_status(project, code, exit_status):
    result = project.run("x=2", "exit_on=2", f"exit_code={code}")
    assert result.returncode == exit_status, result.stderr
    (run_dir,) = project.run_dirs()
    info, run_json = recorded(run_dir)
    if exit_status == 0:
        assert info["status"] == run_json["status"] == "COMPLETE"
        assert "exit_code" not in info
    else:
        assert info["status"] == run_json["status"] == "FAILED"
        assert info["exit_code"] == run_json["exit_code"] == exit_status
