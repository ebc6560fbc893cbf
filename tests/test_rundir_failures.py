"""Run directories under failure: a full disk while logging and at launch, a resume after a
torn last line, steps logged twice by a resumed run, and forced or claimed ids that name no
run (or a run being claimed)."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import time
import warnings
from dataclasses import replace
from pathlib import Path

import mlxpy
import pytest
import yaml
from conftest import tmpfs, untimed
from mlxpy.launching.record import ENV_VAR, LaunchRecord, RunClaim
from mlxpy.rundir import codec
from mlxpy.rundir.layout import RunDir
from mlxpy.rundir.metrics import TornLineWarning, read_metrics
from mlxpy.testing import ProjectDir


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 2 MiB tmpfs, mounted for the test (as root) and unmounted after it."""
    with tmpfs(tmp_path / "disk", "2m") as mount:
        yield mount


def fill(path: Path) -> None:
    """Write zeros into ``path`` until its disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    chunk = bytes(65536)
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def use_logs(project, logs: Path, *settings: str) -> None:
    lines = ["logger:", "  name: DefaultLogger", f"  parent_log_dir: {logs}"]
    project.write_config("\n".join(lines + [f"  {s}" for s in settings]) + "\n", "mlxpy.yaml")


# -- a full disk --------------------------------------------------------------------------

DISK_TASK = """
import os, time
import mlxpy

def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.02)

@mlxpy.launch(config_path="./configs")
def task(ctx):
    marks, lg = ctx.config.marks, ctx.logger
    def log(step):
        lg.log_metrics({"loss": step, "pad": "x" * (200 - 2 * len(str(step)))}, step=step)
    for step in range(100):
        log(step)
    lg.flush()
    open(marks + "/logged1", "w").close()
    wait_for(marks + "/go1")
    for step in range(100, 200):  # the disk is full now: these wait in memory
        log(step)
        time.sleep(0.005)
    open(marks + "/logged2", "w").close()
    wait_for(marks + "/go2")
    for step in range(200, 300):
        log(step)

if __name__ == "__main__":
    task()
"""


def disk_record(step: int) -> dict:
    """The record DISK_TASK logs for ``step`` (its lines are about 250 bytes, so a file that
    fills whole 4 KiB pages mostly ends inside a record)."""
    return {"step": step, "loss": step, "pad": "x" * (200 - 2 * len(str(step)))}


def disk_records(data: bytes) -> list[dict]:
    """The whole lines of a metric log, decoded, without their wall-clock time; a line glued
    to a fragment would not decode, and fail the comparison."""
    lines = data.split(b"\n")[:-1]
    return untimed([codec.decode(line) for line in lines])


@pytest.mark.root
@pytest.mark.parametrize("freed", [True, False], ids=["space-freed", "still-full"])
def test_full_disk_while_logging_keeps_records_once_and_ends_honestly(
    project, small_disk, tmp_path, freed
):
    project.write_main(DISK_TASK)
    marks = tmp_path / "marks"
    marks.mkdir()
    project.write_config(f"marks: {marks}\n")
    logs = small_disk / "logs"
    use_logs(project, logs, "flush_interval_s: 0.1")
    proc = project.popen()
    try:
        wait_for(marks / "logged1", proc)
        (run_dir,) = [p for p in logs.iterdir() if p.name.isdigit()]
        metrics = RunDir(run_dir).metrics_file("train")
        assert disk_records(metrics.read_bytes()) == list(map(disk_record, range(100)))
        gap = small_disk / "gap"
        gap.write_bytes(bytes(8192))
        fill(small_disk / "filler")
        gap.unlink()  # two pages left: the next writes stop part-way through a record
        (marks / "go1").touch()
        wait_for(marks / "logged2", proc)
        time.sleep(0.5)  # several background flushes fail meanwhile
        data = metrics.read_bytes()
        assert data.count(b"\n") < 200  # full, mostly mid-record
        assert proc.poll() is None
        if freed:
            (small_disk / "filler").unlink()
            # the task waits and writes nothing itself: only a living flush thread, retrying,
            # can get the kept records onto the disk
            deadline = time.monotonic() + 20
            while metrics.read_bytes().count(b"\n") < 200:
                assert time.monotonic() < deadline, "the kept records were never written"
                time.sleep(0.05)
            assert disk_records(metrics.read_bytes()) == list(map(disk_record, range(200)))
        (marks / "go2").touch()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    info = yaml.safe_load(RunDir(run_dir).info.read_text())
    with warnings.catch_warnings(record=True) as torn:
        warnings.simplefilter("always")
        steps = [r["step"] for r in read_metrics(metrics)]
    assert "Traceback" not in err, err
    warned = [line for line in err.splitlines() if line.startswith("mlxpy: warning: cannot")]
    assert len(warned) == 1, err
    assert f"disk holding {logs} is full" in warned[0] and "retried" in warned[0]
    errors = [line for line in err.splitlines() if line.startswith("mlxpy: error:")]
    assert not RunDir(run_dir).reserve.exists()
    if freed:
        assert proc.returncode == 0, err
        assert info["status"] == "COMPLETE" and "error" not in info
        assert not errors and not torn
        # every record exactly once, in order, none glued to a fragment
        assert disk_records(metrics.read_bytes()) == list(map(disk_record, range(300)))
        assert steps == list(range(300))
    else:
        assert proc.returncode == 1, err
        (error,) = errors
        assert f"the disk holding {logs} is full" in error and f"df -h {logs}" in error
        assert "+mlxpy.logger.forced_log_id=1" in error  # how to go on
        assert info["status"] == "FAILED" and info["error"]["type"] == "DiskFullError"
        assert str(logs) in info["error"]["message"]
        lost = int(re.search(r"cannot write (\d+) metric record", error).group(1))
        # what is on disk is every record once, in order, then one torn fragment; with the
        # records the error says were not written, that is all of them
        assert steps == list(range(len(steps))) and len(steps) + lost == 300
        assert [w.category for w in torn] == [TornLineWarning]


@pytest.mark.root
def test_launch_onto_a_full_disk_is_a_setup_error(seeded, small_disk):
    logs = small_disk / "logs"
    logs.mkdir()
    use_logs(seeded, logs)
    fill(small_disk / "filler")
    result = seeded.run()
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"mlxpy: error: cannot start a run in {logs}: the disk holding it is full (No space "
        f"left on device). Free space there (df -h {logs}) or set logger.parent_log_dir to a "
        "disk with room"
    ]
    # no half-made run dir left behind (the id hint beside the runs may be there, empty)
    assert [p.name for p in logs.iterdir() if p.name != ".next_id"] == []


# -- resume -------------------------------------------------------------------------------

STEP_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    ctx.logger.log_metrics({"loss": 1.0 / (ctx.config.step + 1)}, step=ctx.config.step)

if __name__ == "__main__":
    task()
"""


def test_resume_after_a_torn_last_line_reads_back(project):
    project.write_main(STEP_TASK)
    project.write_config("step: 0\n")
    assert project.run().returncode == 0
    (run_dir,) = project.run_dirs()
    metrics = RunDir(run_dir).metrics_file("train")
    with open(metrics, "ab") as fh:  # what kill -9 in the middle of a write leaves
        fh.write(b'{"step":1,"loss":0.')
    resumed = project.run("+mlxpy.logger.forced_log_id=1", "step=2")
    assert resumed.returncode == 0, resumed.stderr
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_metrics(metrics)
    assert untimed(records) == [{"step": 0, "loss": 1.0}, {"step": 2, "loss": 1.0 / 3}]
    assert [w.category for w in caught] == [TornLineWarning]
    assert "line 2" in str(caught[0].message)
    last = b'\n{"step":2,"loss":0.3333333333333333,"_time":%r}\n' % records[-1]["_time"]
    assert metrics.read_bytes().endswith(last)


DEDUPE_TASK = """
import os, signal
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    lg = ctx.logger
    state = lg.load_checkpoint() or {"step": 0}
    attempt = ctx.info.get("restarts", 0)
    for step in range(state["step"], 10):
        lg.log_metrics({"loss": 10.0 - step, "attempt": attempt}, step=step)
        if step % 3 == 2:
            lg.log_checkpoint({"step": step + 1})
        if step == 7 and attempt == 0:  # between the checkpoints after steps 5 and 8
            lg.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    lg.log_metrics({"note": 1})  # a record without a step

if __name__ == "__main__":
    task()
"""


def test_steps_logged_again_after_a_resume_count_once(project):
    project.write_main(DEDUPE_TASK)
    project.write_config("seed: 0\n")
    for seed, log_id in ((0, 1), (1, 2)):
        assert project.run(f"seed={seed}").returncode == -9
        resumed = project.run(f"+mlxpy.logger.forced_log_id={log_id}", f"seed={seed}")
        assert resumed.returncode == 0, resumed.stderr
    for run_dir in project.run_dirs():  # every record kept on disk: 6 and 7 twice
        records = read_metrics(RunDir(run_dir).metrics_file("train"))
        assert [r.get("step") for r in records] == [*range(8), 6, 7, 8, 9, None]

    reader = mlxpy.Reader(str(project.logs))
    runs = reader.filter()
    assert list(runs["train.rows"]) == [11, 11]  # ten steps and the step-less record
    assert list(runs["train.attempt.last"]) == [1, 1]
    assert list(runs["train.step.max"]) == [9, 9]

    long = runs.mlxpy.metrics("train")
    assert len(long) == 22
    stepped = long[long["step"].notna()]
    assert not stepped.duplicated(["log_id", "step"]).any()
    latest = stepped.set_index(["log_id", "step"])["attempt"]
    assert [latest[(1, s)] for s in range(10)] == [0] * 6 + [1] * 4  # the latest wins
    assert len(runs.mlxpy.metrics("train", attempts="all")) == 26
    with pytest.raises(ValueError, match="attempts"):
        runs.mlxpy.metrics("train", attempts="first")

    agg = runs.mlxpy.aggregate("train", over="config.seed", metrics=["attempt", "loss"])
    counts = agg[("loss", "count")]
    assert [counts.loc[s] for s in range(10)] == [2] * 10  # each run once per step
    assert agg.loc[6, ("attempt", "mean")] == 1.0 and agg.loc[5, ("attempt", "mean")] == 0.0
    every = runs.mlxpy.aggregate("train", over="config.seed", attempts="all")
    assert every.loc[6, ("loss", "count")] == 4


# -- forced and claimed ids ---------------------------------------------------------------


def test_forced_id_must_name_an_existing_run(seeded):
    result = seeded.run("+mlxpy.logger.forced_log_id=500")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"mlxpy: error: run 500 does not exist in {seeded.logs.resolve()}; "
    )
    assert seeded.run_dirs() == []


def test_forced_id_never_enters_a_dir_being_claimed(seeded):
    # what a fresh launch has made before it holds the dir's lock and writes the run info
    claimed = seeded.logs / "3" / "metadata"
    claimed.mkdir(parents=True)
    result = seeded.run("+mlxpy.logger.forced_log_id=3")
    assert result.returncode == 2 and "has no run info" in result.stderr
    assert list(claimed.iterdir()) == []  # not even a lock that would turn the launch away


def test_fresh_launches_and_forced_ids_racing_never_share_a_dir(seeded):
    assert seeded.run("seed=100").returncode == 0  # run 1
    fresh = [seeded.popen(f"seed={i}") for i in range(8)]
    forced = [seeded.popen(f"+mlxpy.logger.forced_log_id={i}", "seed=99") for i in range(2, 10)]
    for proc in fresh:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err  # a forced id never turns a fresh launch away
    for proc in forced:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 2), err
        if proc.returncode == 2:
            assert re.search("does not exist|has no run info|in use by a live process", err), err
    runs = seeded.run_dirs()
    assert [r.name for r in runs] == [str(i) for i in range(1, 10)]  # no run made by a forced id
    first_seeds = set()
    for run in runs[1:]:
        info = seeded.info(run)
        assert info["status"] == "COMPLETE"
        config = RunDir(run).metadata / "config.before_restart_1.yaml"
        if info.get("restarts"):  # a resume found a run that had started and ended
            assert [a["status"] for a in info["history"]] == ["COMPLETE"]
            first_seeds.add(yaml.safe_load(config.read_text())["seed"])
        else:
            first_seeds.add(seeded.config(run)["seed"])
    assert first_seeds == set(range(8))


def test_a_scheduled_job_starts_only_the_dir_claimed_for_it(tmp_path):
    project = ProjectDir(tmp_path / "p")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "sleep", "sleep": 4})
    options = {"scheduler": {"name": "LocalScheduler", "max_workers": 1}, "use_scheduler": True}
    project.write_config(options, "mlxpy.yaml")
    assert project.run("seed=1,2").returncode == 0
    first, second = project.run_dirs()
    script = RunDir(second).job_script.read_text()
    record_path = RunDir(second).launch_record
    assert f"export {ENV_VAR}={record_path}\n" in script and "log_id" not in script
    record = LaunchRecord.read(record_path)
    assert record.claim == RunClaim(2, str(second))
    # run 2 waits for the one worker: it is SUBMITTED, and its job will start it
    assert project.info(second)["status"] == "SUBMITTED"
    local = ["+mlxpy.use_scheduler=false", "mode=ok"]
    early = project.run(*local, "+mlxpy.logger.forced_log_id=2")
    assert early.returncode == 2 and "run 2 in" in early.stderr and "is SUBMITTED" in early.stderr
    infos = project.wait(2, 120)
    assert [i["status"] for i in infos] == ["COMPLETE", "COMPLETE"]
    assert [i.get("restarts") for i in infos] == [None, None]  # started, not resumed

    assert project.run(*local).returncode == 0  # run 3, never submitted

    def job_of(log_id: int) -> subprocess.CompletedProcess:
        """Start a job as its script would, with a record that claims ``log_id``."""
        claim = RunClaim(log_id, str(project.logs / str(log_id)))
        path = replace(record, claim=claim).write(tmp_path / f"launch-{log_id}.json")
        project.env = {ENV_VAR: str(path)}
        try:
            return project.run("mode=ok")
        finally:
            project.env = {}

    stray = job_of(3)
    assert stray.returncode == 2 and "was not claimed by a submission" in stray.stderr
    missing = job_of(9)
    assert missing.returncode == 2 and "run 9 does not exist" in missing.stderr
    # a requeued job restarts its claimed dir, whatever the last attempt's status
    again = job_of(1)
    assert again.returncode == 0, again.stderr
    assert project.info(first)["restarts"] == 1
