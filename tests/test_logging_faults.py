"""Killed runs keep what they logged: kill -9 while logging and while checkpointing, SIGTERM,
heartbeat and lock, and many simultaneous launches."""

from __future__ import annotations

import fcntl
import os
import pickle
import signal
import time
import warnings

import pytest
from mlxpy.rundir.metrics import read_metrics

FAULT_TASK = """
import os, time
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    mode, ready = ctx.config.mode, ctx.config.ready
    logger = ctx.logger
    if mode == "log_forever":
        step = 0
        while True:
            logger.log_metrics({"loss": 1.0 / (step + 1), "pad": "x" * 50}, step=step)
            if step == 5000:
                logger.flush()
                with open(ready, "w") as fh:
                    fh.write(str(step))
            step += 1
    elif mode == "checkpoint_forever":
        epoch = 0
        big = os.urandom(30_000_000)
        while True:
            logger.log_checkpoint({"epoch": epoch, "blob": big})
            if epoch == 1:
                with open(ready, "w") as fh:
                    fh.write("1")
            epoch += 1
    elif mode == "buffered_then_sleep":
        for step in range(300):
            logger.log_metrics({"loss": float(step)}, step=step)
        with open(ready, "w") as fh:
            fh.write("ok")
        time.sleep(60)
    elif mode == "sleep":
        with open(ready, "w") as fh:
            fh.write("ok")
        time.sleep(60)

if __name__ == "__main__":
    my_task()
"""


@pytest.fixture
def faults(project):
    project.write_main(FAULT_TASK)
    project.write_config("seed: 0\nmode: sleep\nready: ''\n")
    return project


def start(project, ready, *args):
    proc = project.popen(f"ready={ready}", *args)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        assert time.monotonic() < deadline, "task never got ready"
        time.sleep(0.02)
    return proc


def test_kill_9_while_logging_keeps_every_flushed_record(faults, tmp_path):
    proc = start(faults, tmp_path / "ready", "mode=log_forever")
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    (run_dir,) = faults.run_dirs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the last line may be torn: skipped with a warning
        records = read_metrics(run_dir / "metrics" / "train.json")
    steps = [r["step"] for r in records]
    assert steps[:5001] == list(range(5001))  # everything before the flush is there
    assert steps == list(range(len(steps)))  # and nothing after it is garbled
    assert faults.info(run_dir)["status"] == "RUNNING"  # what a kill -9 leaves behind


def test_kill_9_during_checkpoint_leaves_the_previous_one(faults, tmp_path):
    proc = start(faults, tmp_path / "ready", "mode=checkpoint_forever")
    time.sleep(0.5)  # several 30 MB checkpoints are being written and replaced
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    (run_dir,) = faults.run_dirs()
    with open(run_dir / "checkpoints" / "last_ckpt.pkl", "rb") as fh:
        checkpoint = pickle.load(fh)
    assert checkpoint["epoch"] >= 1 and len(checkpoint["blob"]) == 30_000_000
    faults.write_main(
        FAULT_TASK.replace(
            'elif mode == "sleep":',
            'elif mode == "load":\n        print("epoch", logger.load_checkpoint()["epoch"])\n'
            '    elif mode == "sleep":',
        )
    )
    resumed = faults.run("mode=load", "+mlxpy.logger.forced_log_id=1")
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch {checkpoint['epoch']}" in resumed.stdout
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]


def test_sigterm_flushes_buffered_metrics(faults, tmp_path):
    proc = start(
        faults, tmp_path / "ready", "mode=buffered_then_sleep", "+mlxpy.logger.flush_interval_s=100"
    )
    (run_dir,) = faults.run_dirs()
    assert not (run_dir / "metrics" / "train.json").read_bytes()  # still buffered
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert [r["step"] for r in read_metrics(run_dir / "metrics" / "train.json")] == list(range(300))
    assert faults.info(run_dir)["status"] == "INTERRUPTED"


def test_heartbeat_and_lock_tell_live_from_dead(faults, tmp_path):
    proc = start(
        faults,
        tmp_path / "ready",
        "mode=sleep",
        "+mlxpy.logger.flush_interval_s=0.1",
        "+mlxpy.logger.heartbeat_interval_s=0.2",
    )
    (run_dir,) = faults.run_dirs()
    heartbeat = run_dir / "metadata" / "heartbeat"
    first = heartbeat.stat().st_mtime
    time.sleep(0.8)
    assert heartbeat.stat().st_mtime > first  # refreshed while alive
    lock = os.open(run_dir / "metadata" / ".lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        second = faults.run("mode=sleep", "ready=/dev/null", "+mlxpy.logger.forced_log_id=1")
        assert second.returncode == 2
        assert "run 1 is in use by a live process (pid" in second.stderr
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        stale = heartbeat.stat().st_mtime
        time.sleep(0.5)
        assert heartbeat.stat().st_mtime == stale
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the kernel released it
    finally:
        os.close(lock)


def test_200_simultaneous_launches(project):
    project.write_main("""
        import mlxpy

        @mlxpy.launch(config_path="./configs")
        def my_task(ctx):
            ctx.logger.log_metrics({"seed": ctx.config.seed}, step=0)

        if __name__ == "__main__":
            my_task()
    """)
    project.write_config("seed: 0\n")
    project.run("--cfg", "job")
    procs = [project.popen(f"seed={i}") for i in range(200)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    runs = project.run_dirs()
    assert [int(r.name) for r in runs] == list(range(1, 201))
    seeds = set()
    for run in runs:
        info = project.info(run)
        assert info["status"] == "COMPLETE" and info["log_id"] == int(run.name)
        config = project.config(run)
        (record,) = read_metrics(run / "metrics" / "train.json")
        assert record["seed"] == config["seed"]
        seeds.add(config["seed"])
    assert seeds == set(range(200))
    names = sorted(p.name for p in project.logs.iterdir())
    assert names == sorted([*(str(i) for i in range(1, 201)), ".next_id"])  # and the id hint
