"""Cluster limits on the real single-node SLURM cluster (scripts/clusters/slurm.sh): arrays
split at MaxArraySize (lowered per project with ``max_array_tasks``, not with 1001+ jobs),
``sweep.max_running`` across the split arrays, ``sweep.pack``, the cap on submitted jobs, and
a whole sweep's status in one ``scontrol`` call. Held jobs (``--hold``) are cancelled at the
end of each test: nothing floods the machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from mlxpy.testing import RESUMABLE_TASK, SUITE_TASK, ProjectDir

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

CONFIG = {"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0}
HOLD = "+mlxpy.scheduler.option_cmd=['--hold']"

# counts each call of the real command (by its arguments), then runs it
COUNTING_SHIM = """#!/bin/sh
echo "$(basename "$0") $*" >> {log}
exec {real} "$@"
"""


def slurm_project(tmp_path: Path, **scheduler: object) -> ProjectDir:
    project = ProjectDir(tmp_path / "p", SUITE_TASK)
    project.write_config(CONFIG)
    project.write_config(
        {"scheduler": {"name": "SLURMScheduler", **scheduler}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    return project


def job_ids(project: ProjectDir) -> list[str]:
    return [project.info(d)["scheduler"]["job_id"] for d in project.run_dirs()]


def show_job(array_id: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", array_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out.splitlines()[0]))


def cancel(project: ProjectDir) -> None:
    ids = sorted({j.split("_")[0] for j in job_ids(project)})
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def test_a_sweep_larger_than_the_array_limit_is_split_and_throttled_across_arrays(tmp_path):
    """5 points, arrays of at most 2 tasks: ceil(5/2) = 3 arrays with indices 0..1, each
    throttled to max_running and waiting for the one before (afterany)."""
    project = slurm_project(tmp_path, max_array_tasks=2)
    try:
        result = project.run("seed=range(1,6)", "+mlxpy.sweep.max_running=1", HOLD)
        assert result.returncode == 0, result.stderr
        ids = job_ids(project)
        arrays = list(dict.fromkeys(j.split("_")[0] for j in ids))
        assert len(arrays) == 3
        assert [j.split("_")[1] for j in ids] == ["0", "1", "0", "1", "0"]
        jobs = [show_job(a) for a in arrays]
        assert [j["ArrayTaskId"] for j in jobs] == ["0-1%1", "0-1%1", "0%1"]
        assert [j.get("ArrayTaskThrottle") for j in jobs] == ["1", "1", "1"]
        dependencies = [j["Dependency"] for j in jobs]
        assert dependencies[0] == "(null)"
        assert dependencies[1].startswith(f"afterany:{arrays[0]}")
        assert dependencies[2].startswith(f"afterany:{arrays[1]}")
    finally:
        cancel(project)


def test_max_running_holds_across_split_arrays(tmp_path):
    """6 points of 2 s in arrays of 3, max_running 2: never more than 2 running (sampled
    with squeue), and the limit is used (2 at once at some point)."""
    project = slurm_project(tmp_path, max_array_tasks=3)
    result = project.run("seed=range(1,7)", "+mlxpy.sweep.max_running=2", "mode=sleep", "sleep=2")
    assert result.returncode == 0, result.stderr
    arrays = set(j.split("_")[0] for j in job_ids(project))
    assert len(arrays) == 2
    most = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-t", "RUNNING", "-o", "%F"], capture_output=True, text=True
        ).stdout.split()
        most = max(most, len([j for j in out if j in arrays]))
        infos = [project.info(d) for d in project.run_dirs()]
        if all(i["status"] == "COMPLETE" for i in infos):
            break
        time.sleep(0.2)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 6
    assert most == 2


def test_pack_runs_three_points_in_one_job(tmp_path):
    project = slurm_project(tmp_path)
    result = project.run("seed=1,2,3", "+mlxpy.sweep.pack=3")
    assert result.returncode == 0, result.stderr
    infos = project.wait(3, 120)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    (job_id,) = {i["scheduler"]["job_id"] for i in infos}
    assert re.fullmatch(r"\d+", job_id)  # one job, not an array
    for info in infos:
        out = (Path(info["log_dir"]) / "job.stdout").read_text()
        seed = project.config(Path(info["log_dir"]))["seed"]
        assert f"RUN committed 0.1 {seed} ''" in out  # its own output, in its own run dir
    deadline = time.monotonic() + 30  # the job ends a moment after its last run
    while show_job(job_id)["JobState"] != "COMPLETED":
        assert time.monotonic() < deadline, show_job(job_id)
        time.sleep(0.5)
    status = json.loads(project.mlxpy("status", "--format", "json").stdout)
    assert {row["status"] for row in status} == {"COMPLETE"}


def test_a_sweep_over_the_submit_cap_is_refused_before_any_run_dir(tmp_path):
    project = slurm_project(tmp_path, max_submitted=2)
    result = project.run("seed=1,2,3", HOLD)
    assert result.returncode == 2
    assert "this sweep needs 3 scheduler jobs" in result.stderr
    assert "+mlxpy.sweep.pack=2" in result.stderr
    assert project.run_dirs() == []
    packed = project.run("seed=1,2,3", "+mlxpy.sweep.pack=2", HOLD)  # the fix it names
    try:
        assert packed.returncode == 0, packed.stderr
        assert len(set(job_ids(project))) == 2
    finally:
        cancel(project)


def test_status_of_a_50_point_sweep_is_one_scheduler_call(tmp_path):
    """``mlxpy status`` of 50 held array tasks: one ``scontrol show job`` (real commands on
    PATH, wrapped to count their calls)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for command in ("scontrol", "squeue", "sacct", "sbatch"):
        real = shutil.which(command)
        if real:
            (bin_dir / command).write_text(COUNTING_SHIM.format(log=log, real=real))
            (bin_dir / command).chmod(0o755)
    project = slurm_project(tmp_path)
    project.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    try:
        result = project.run("seed=range(0,50)", HOLD)
        assert result.returncode == 0, result.stderr
        log.write_text("")
        rows = json.loads(project.mlxpy("status", "--format", "json").stdout)
        assert len(rows) == 50 and {r["scheduler_state"] for r in rows} == {"PENDING"}
        assert log.read_text().splitlines() == ["scontrol show job -o"]
    finally:
        cancel(project)


def wait_running(project: ProjectDir, run_dir: Path, timeout: float = 120) -> None:
    """Until the run has started its task and saved a first checkpoint."""
    deadline = time.monotonic() + timeout
    while not (
        project.info(run_dir).get("status") == "RUNNING"
        and "start at" in (run_dir / "job.stdout").read_text()
        and any(run_dir.glob("**/*checkpoint*"))
    ):
        assert time.monotonic() < deadline, project.info(run_dir)
        time.sleep(0.2)
    time.sleep(1.5)


@pytest.mark.parametrize("requeue", [True, False])
def test_warning_signal_in_a_pack_goes_to_the_running_point(tmp_path, requeue):
    """SLURM's warning (SIGUSR1, sent here with ``scancel --signal --batch``) reaches the
    point in progress, which records TIMEOUT. With requeue, the requeued pack skips the
    point that had ended and resumes the interrupted one from its checkpoint; without, the
    pack starts no further point, and ``mlxpy status`` marks the one never started."""
    project = ProjectDir(tmp_path / "p", RESUMABLE_TASK)
    project.write_config({"seed": 0, "steps": 5})
    project.write_config(
        {"scheduler": {"name": "SLURMScheduler", "requeue": requeue}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    result = project.run("seed=1,2,3", "+mlxpy.sweep.pack=3")
    assert result.returncode == 0, result.stderr
    first, second, third = project.run_dirs()
    job_id = project.info(first)["scheduler"]["job_id"]
    try:
        wait_running(project, second)
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)
        if requeue:
            infos = project.wait(3, 240, done={"COMPLETE", "FAILED"})
            assert [i["status"] for i in infos] == ["COMPLETE"] * 3
            assert [i.get("restarts", 0) for i in infos] == [0, 1, 0]
            assert {e["status"] for e in infos[1]["history"]} == {"TIMEOUT"}
            starts = [(d / "job.stdout").read_text().count("start at") for d in (first, second)]
            assert starts == [1, 2]  # the ended point was not run again
            resumed = (second / "job.stdout").read_text().splitlines()
            assert [line for line in resumed if line.startswith("start at")][1] != (
                "start at 0 restarts 1"
            )  # continued from its checkpoint
        else:
            deadline = time.monotonic() + 60
            while show_job(job_id)["JobState"] not in ("COMPLETED", "FAILED"):
                assert time.monotonic() < deadline
                time.sleep(0.5)
            rows = json.loads(project.mlxpy("status", "--format", "json").stdout)
            assert [r["status"] for r in rows] == ["COMPLETE", "TIMEOUT", "FAILED"]
            assert "before the run started" in project.info(third)["error"]["message"]
            assert not (third / "job.stdout").exists()  # never started
    finally:
        subprocess.run(["scancel", job_id], check=False)


def test_a_cancelled_pending_array_shows_its_runs_cancelled(tmp_path):
    """``scancel -u <user>`` of a pending array leaves one record naming no task
    (ArrayTaskId is NO_VAL): every run of it is CANCELLED, not '(gone)' and SUBMITTED for
    ever. Only this test's array is cancelled (``-n`` its unique name)."""
    name = f"mlxpy-test-{uuid.uuid4().hex[:8]}"
    project = slurm_project(tmp_path)
    options = f"+mlxpy.scheduler.option_cmd=['--hold','--job-name={name}']"
    result = project.run("seed=1,2,3", options)
    assert result.returncode == 0, result.stderr
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["scancel", "-u", user, "-n", name], check=True)
    (array,) = {j.split("_")[0] for j in job_ids(project)}
    deadline = time.monotonic() + 30
    while show_job(array)["JobState"] != "CANCELLED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert show_job(array)["ArrayTaskId"] == "4294967294"  # the case this test is about
    rows = json.loads(project.mlxpy("status", "--format", "json").stdout)
    assert [(r["scheduler_state"], r["status"]) for r in rows] == [("CANCELLED", "CANCELLED")] * 3
    assert {project.info(d)["status"] for d in project.run_dirs()} == {"CANCELLED"}
