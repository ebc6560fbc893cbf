"""The requeue contract between a run and its scheduler, without a cluster: a scheduled run
(started with a launch record naming its scheduler, as job scripts start it) receives its
scheduler's warning signal, and the scheduler plugin, given by dotted path and built with the
record's settings, decides whether and how the job is requeued. A repeated warning does not
interrupt the checkpoint the first one started.
The SLURM and OAR plugins test the same against their real clusters."""

from __future__ import annotations

import signal

import pytest
from mlxpy.launching.record import ENV_VAR, LaunchRecord, SchedulerChoice

SCHEDULER = """
import os

from mlxpy import Scheduler


class WarnedScheduler(Scheduler):
    name = "WarnedScheduler"
    warning_signals = {"SIGUSR1": "TIMEOUT"}

    def __init__(self, requeue=True, exit_code=-1, can="allow", **kwargs):
        super().__init__(**kwargs)
        self.requeue = requeue
        self.can = can
        if exit_code >= 0:
            self.requeue_exit_code = exit_code

    def can_requeue_current_job(self):
        if self.can == "raise":
            raise RuntimeError("scheduler unreachable")
        return self.can == "allow"

    def requeue_current_job(self):
        with open(os.environ["REQUEUE_MARK"], "w") as handle:
            handle.write("requeued")
        return True
"""

TASK = """
import os, signal, time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    ctx.logger.log_checkpoint({"step": 3})
    try:
        os.kill(os.getpid(), signal.SIGUSR1)  # the scheduler's warning
        signal.pause()
    except mlxpy.RunInterrupted:
        os.kill(os.getpid(), signal.SIGUSR1)  # repeated (OAR does, every 10 s)
        time.sleep(0.2)
        ctx.logger.log_checkpoint({"step": 4})
        print("checkpoint saved", flush=True)
        raise

if __name__ == "__main__":
    task()
"""


@pytest.mark.parametrize(
    "exit_code, can, returncode, requeued",
    [
        (99, "allow", 99, True),  # OAR: the exit code asks the scheduler to resubmit
        (-1, "allow", 128 + signal.SIGUSR1, True),  # SLURM: requeue_current_job does it
        (99, "deny", 128 + signal.SIGUSR1, False),  # the scheduler's rules forbid it
        (99, "raise", 128 + signal.SIGUSR1, False),  # the check fails: still recorded
    ],
)
def test_warning_signal_requeue_decision(project, tmp_path, exit_code, can, returncode, requeued):
    project.write_main(TASK)
    (project.root / "warned_scheduler.py").write_text(SCHEDULER)
    project.write_config("seed: 0\n")
    # mlxpy.yaml says otherwise: a job's scheduler is the one its launch record names
    project.write_config("scheduler:\n  name: Scheduler\nuse_scheduler: false\n", "mlxpy.yaml")
    # the record a submission writes, without the run dir claim (the job claims a new one)
    record = LaunchRecord(
        project_dir=str(project.root),
        config_dir=str(project.configs),
        argv=[str(project.root / "main.py")],
        scheduler=SchedulerChoice(
            "warned_scheduler.WarnedScheduler", {"exit_code": exit_code, "can": can}
        ),
    ).write(tmp_path / "launch.json")
    mark = tmp_path / "requeue-mark"
    result = project.run(env={ENV_VAR: str(record), "REQUEUE_MARK": str(mark)})
    assert result.returncode == returncode, result.stderr
    (run_dir,) = project.run_dirs()
    info = project.info(run_dir)
    assert info["status"] == "TIMEOUT" and info["interrupt_reason"] == "SIGUSR1"
    assert bool(info.get("requeued")) is requeued
    assert mark.exists() is requeued
    assert "checkpoint saved" in result.stdout  # the repeated warning did not cut it short
    if can == "raise":
        assert "not requeued" in result.stderr and "scheduler unreachable" in result.stderr
