"""Edges found in review of the run-directory work: a job whose record fails inside a sweep,
a job that cannot start, same-step records, a signal during a metrics write, symlink loops
under artifacts/, a hostile metric log in the accessor, and the artifact manifest inside a
task. Real processes and files throughout."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from mlxpy.errors import RunInterrupted
from mlxpy.rundir.layout import RunDir
from mlxpy.rundir.metrics import MetricsWriter, latest_per_step, read_records
from mlxpy.testing import ProjectDir

TASK = """
import threading
import mlxpy
from mlxpy.rundir.claim import is_locked
from mlxpy.rundir.layout import RunDir


@mlxpy.launch(config_path="./configs")
def task(ctx):
    ctx.logger.log_metrics({"loss": 1.0}, step=0)
    if ctx.config.check_first:  # job 1 could not start: nothing of it may linger
        first = RunDir(ctx.info.log_dir).root.parent / "1"
        tickers = [t for t in threading.enumerate() if t.name == "mlxpy-logger"]
        print("FIRST_LOCKED", is_locked(RunDir(first).lock), "TICKERS", len(tickers))
    if ctx.config.artifacts:
        ctx.logger.log_artifacts({"a": 1}, "x", "json")
        ctx.logger.log_artifacts("hello", "x", "text")  # the type recorded last wins
        print("LOADED", repr(ctx.logger.load_artifacts("x")))


if __name__ == "__main__":
    task()
"""

# Selected by dotted path: a logger whose record fails for job x=1 (at its end, or its start).
FLAKY = """
from mlxpy import DefaultLogger


class FlakyLogger(DefaultLogger):
    def __init__(self, fail_at="end", **settings):
        super().__init__(**settings)
        self.fail_at = fail_at
        self.saves = 0

    def save_info(self, info):
        self.saves += 1
        if self.ctx.config.x == 1 and self.fail_at == "start" and self.saves == 1:
            raise OSError("the info file cannot be written (test)")
        super().save_info(info)

    def end_run(self, ctx, status):
        super().end_run(ctx, status)
        if ctx.config.x == 1 and self.fail_at == "end":
            raise RuntimeError("end_run failed (test)")
"""


@pytest.fixture
def project(tmp_path: Path) -> ProjectDir:
    project = ProjectDir(tmp_path / "proj", TASK)
    project.write_config({"x": 0, "check_first": False, "artifacts": False})
    (project.root / "flaky.py").write_text(textwrap.dedent(FLAKY))
    project.env["PYTHONPATH"] = os.pathsep.join(
        [str(project.root), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return project


def test_a_job_whose_record_fails_does_not_stop_the_sweep(project):
    result = project.run("x=1,2", "+mlxpy.logger.name=flaky.FlakyLogger")
    assert result.returncode == 1, result.stderr
    assert "could not end its logging: RuntimeError: end_run failed" in result.stderr
    assert "1 of 2 jobs failed" in result.stderr
    assert [project.info(d)["status"] for d in project.run_dirs()] == ["COMPLETE", "COMPLETE"]


def test_a_job_that_cannot_start_leaves_no_logger_running(project):
    result = project.run(
        "x=1,2",
        "check_first=true",
        "+mlxpy.logger.name=flaky.FlakyLogger",
        "+mlxpy.logger.fail_at=start",
    )
    assert result.returncode == 1, result.stderr
    assert "error in job 1" in result.stderr and "cannot be written" in result.stderr
    assert "FIRST_LOCKED False TICKERS 1" in result.stdout, result.stdout


def test_records_of_one_step_merge_and_a_later_attempt_wins():
    attempt_1 = [{"step": s, "loss": float(s)} for s in range(6)]
    attempt_1.insert(3, {"step": 2, "acc": 0.5})  # same step, same attempt: one row
    attempt_2 = [{"step": 4, "loss": 40.0}, {"step": 5, "loss": 50.0}, {"step": 6, "loss": 6.0}]
    rows = latest_per_step([*attempt_1, {"note": "no step"}, *attempt_2])
    by_step = {r["step"]: r for r in rows if "step" in r}
    assert sorted(by_step) == list(range(7)) and len(rows) == 8
    assert by_step[2] == {"step": 2, "loss": 2.0, "acc": 0.5}
    assert by_step[4]["loss"] == 40.0 and by_step[5]["loss"] == 50.0
    assert {"note": "no step"} in rows


@pytest.mark.parametrize("other_thread", [False, True])
def test_a_signal_during_a_metrics_write_never_duplicates_records(
    tmp_path, monkeypatch, other_thread
):
    """With another thread alive (a data loader's), the kernel gives the signal to it while
    the main thread masks it, and the handler may run between the write and the trim."""
    import threading

    from mlxpy.rundir import metrics

    idle = threading.Event()
    if other_thread:
        threading.Thread(target=idle.wait, daemon=True).start()

    def raise_interrupt(signum, frame):
        raise RunInterrupted(signum, "SIGTERM")

    real_write = os.write
    sent = []

    def write_then_signal(fd, data):  # the signal lands while the write is under way
        written = real_write(fd, data)
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # another thread takes it meanwhile; its handler runs here
        return written

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        writer = MetricsWriter(tmp_path / "train.json", tmp_path / "keys.json", "train", 1000)
        for step in range(50):
            writer.write({"loss": step / 10}, step=step)
        monkeypatch.setattr(metrics.os, "write", write_then_signal)
        with pytest.raises(RunInterrupted):
            writer.flush()
        monkeypatch.setattr(metrics.os, "write", real_write)
        writer.close()  # what the run's end does after the interruption
    finally:
        signal.signal(signal.SIGTERM, previous)
        idle.set()
    steps = [r["step"] for r in read_records(tmp_path / "train.json")]
    assert sent and steps == list(range(50))


def _run_once(project: ProjectDir) -> Path:
    assert project.run().returncode == 0
    (run_dir,) = project.run_dirs()
    return run_dir


def test_a_symlink_loop_under_artifacts_is_refused_not_a_crash(project):
    run_dir = _run_once(project)
    artifacts = RunDir(run_dir).artifacts
    artifacts.mkdir()
    (artifacts / "json").symlink_to(artifacts / "json")  # a loop
    result = project.run(f"+mlxpy.logger.forced_log_id={run_dir.name}", "artifacts=true")
    assert result.returncode != 0
    assert "symbolic link" in result.stderr and "RuntimeError" not in result.stderr


def test_the_accessor_skips_a_hostile_metric_log_and_reads_the_others(project):
    import mlxpy

    for _ in range(2):
        assert project.run().returncode == 0
    first, second = project.run_dirs()
    log = RunDir(first).metrics_file("train")
    log.unlink()
    os.mkfifo(log)
    with pytest.warns(Warning):
        runs = mlxpy.Reader(project.logs).filter()
    with pytest.warns(Warning, match="metrics skipped"):
        long = runs.mlxpy.metrics("train")
    assert long["log_id"].tolist() == [int(second.name)]


def test_load_artifacts_in_a_task_uses_the_recorded_type(project):
    result = project.run("artifacts=true")
    assert result.returncode == 0, result.stderr
    assert "LOADED 'hello'" in result.stdout
    (run_dir,) = project.run_dirs()
    manifest = json.loads((RunDir(run_dir).metadata / "artifacts.json").read_text())
    assert manifest == {"x": "text"}


def test_show_refuses_a_symlinked_run_dir(project, tmp_path):
    run_dir = _run_once(project)
    (project.logs / "7").symlink_to(run_dir)
    shown = project.mlxpy("show", "7", str(project.logs))
    assert shown.returncode == 2 and "symbolic link" in shown.stderr, shown.stderr
    assert project.mlxpy("show", run_dir.name, str(project.logs)).returncode == 0
