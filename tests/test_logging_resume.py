"""Resuming a run with ``forced_log_id``, and ``log_streams_to_file``."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from mlxpy.rundir.metrics import read_metrics

RESUME_TASK = """
import os, signal
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    lg = ctx.logger
    state = lg.load_checkpoint() or {"epoch": 0}
    print("resuming from epoch", state["epoch"], "restarts", ctx.info.get("restarts", 0))
    for epoch in range(state["epoch"], ctx.config.epochs):
        lg.log_metrics({"loss": 1.0 / (epoch + 1), "lr": ctx.config.lr}, step=epoch)
        lg.log_checkpoint({"epoch": epoch + 1})
        if epoch + 1 == ctx.config.crash_after:
            raise RuntimeError("simulated crash")
        if epoch + 1 == ctx.config.kill_after:  # as OAR's oardel or a preemption does
            os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    my_task()
"""


@pytest.fixture
def resumable(project):
    project.write_main(RESUME_TASK)
    project.write_config("seed: 0\nepochs: 10\nlr: 0.1\ncrash_after: 5\nkill_after: -1\n")
    return project


def test_resume_continues_the_same_run(resumable):
    first = resumable.run()
    assert first.returncode == 1 and "simulated crash" in first.stderr
    (run_dir,) = resumable.run_dirs()
    first_info = resumable.info(run_dir)
    assert first_info["status"] == "FAILED"

    second = resumable.run("+mlxpy.logger.forced_log_id=1", "crash_after=-1", "lr=0.05")
    assert second.returncode == 0, second.stderr
    assert "resuming from epoch 5 restarts 1" in second.stdout
    assert "resumes with a different config" in second.stderr
    assert "crash_after: 5 -> -1" in second.stderr and "lr: 0.1 -> 0.05" in second.stderr
    assert resumable.run_dirs() == [run_dir]

    steps = [r["step"] for r in read_metrics(run_dir / "metrics" / "train.json")]
    assert steps == list(range(10))  # appended, no duplicated step
    info = resumable.info(run_dir)
    assert info["status"] == "COMPLETE" and info["restarts"] == 1
    (earlier,) = info["history"]
    assert earlier["status"] == "FAILED" and earlier["start_time"] == first_info["start_time"]
    assert resumable.config(run_dir)["lr"] == 0.05
    kept = run_dir / "metadata" / "config.before_restart_1.yaml"
    assert "lr: 0.1" in kept.read_text()

    third = resumable.run("+mlxpy.logger.forced_log_id=1", "crash_after=-1", "lr=0.05")
    assert "resuming from epoch 10 restarts 2" in third.stdout
    assert "different config" not in third.stderr
    assert len(resumable.info(run_dir)["history"]) == 2


def test_attempt_killed_without_a_word_is_lost_in_history(resumable):
    """SIGKILL leaves the run RUNNING; resuming it records that attempt as LOST, ended
    when its heartbeat stopped, and continues from its last checkpoint."""
    first = resumable.run("crash_after=-1", "kill_after=4")
    assert first.returncode == -9
    (run_dir,) = resumable.run_dirs()
    first_info = resumable.info(run_dir)
    assert first_info["status"] == "RUNNING"
    last_beat = datetime.fromisoformat(first_info["start_time"]).timestamp() + 3.25
    os.utime(run_dir / "metadata" / "heartbeat", (last_beat, last_beat))
    second = resumable.run("+mlxpy.logger.forced_log_id=1", "crash_after=-1")
    assert second.returncode == 0, second.stderr
    assert "resuming from epoch 4 restarts 1" in second.stdout
    (earlier,) = resumable.info(run_dir)["history"]
    assert earlier["status"] == "LOST"
    ended = datetime.fromtimestamp(last_beat, timezone.utc).astimezone()
    assert earlier["end_time"] == ended.isoformat(timespec="milliseconds")
    steps = [r["step"] for r in read_metrics(run_dir / "metrics" / "train.json")]
    assert steps == list(range(10))


STREAMS_TASK = """
import os, subprocess, sys
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    print("python print", ctx.info.log_id)
    os.write(1, b"raw fd write\\n")
    subprocess.run(["sh", "-c", "echo child stdout; echo child stderr >&2"], check=True)
    print("python stderr", file=sys.stderr)

if __name__ == "__main__":
    my_task()
    print("after the run")
"""


def test_streams_are_teed_to_files_and_terminal(project):
    project.write_main(STREAMS_TASK)
    project.write_config("seed: 0\n")
    (project.configs / "mlxpy.yaml").write_text(
        "logger:\n  name: DefaultLogger\n  log_streams_to_file: true\n"
    )
    result = project.run()
    assert result.returncode == 0, result.stderr
    for text in ("python print 1", "raw fd write", "child stdout", "after the run"):
        assert text in result.stdout  # still reaches the terminal
    assert "child stderr" in result.stderr and "python stderr" in result.stderr
    (run_dir,) = project.run_dirs()
    out = (run_dir / "log.stdout").read_text()
    err = (run_dir / "log.stderr").read_text()
    # order between Python's buffered prints and raw fd writes is the OS's business
    assert sorted(out.splitlines()) == ["child stdout", "python print 1", "raw fd write"]
    # each attempt's captured stderr starts with the line naming its run
    assert err.splitlines()[0] == f"[mlxpy] run 1 {run_dir}"
    assert sorted(err.splitlines()[1:]) == ["child stderr", "python stderr"]

    again = project.run("+mlxpy.logger.forced_log_id=1")
    assert again.returncode == 0, again.stderr
    assert (run_dir / "log.stdout").read_text().count("raw fd write") == 2  # appended
