"""OARScheduler against the real single-node OAR 2.5 cluster started by
scripts/clusters/oar.sh. OAR refuses jobs from root, so the tests launch as the unprivileged
user that script creates, from a directory that user owns. They fail, not skip, without the
cluster: CI starts it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from mlx_oar.scheduler import OARScheduler
from mlxpy.rundir.metrics import read_metrics
from mlxpy.testing import RESUMABLE_TASK, SUITE_TASK, ProjectDir, SchedulerSuite

pytestmark = [pytest.mark.cluster, pytest.mark.oar]

SUITE_CONFIG = {"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0}
OAR_USER = os.environ.get("OAR_TEST_USER", "mlxpyoar")
BASE = Path("/var/tmp/mlxpy-oar-tests")


def as_oar_user(project: ProjectDir) -> None:
    shutil.chown(BASE, OAR_USER)
    subprocess.run(["chown", "-R", OAR_USER, str(project.root)], check=True)
    project.command_prefix = ["runuser", "-u", OAR_USER, "--"]
    project.env["HOME"] = f"/home/{OAR_USER}"


def oar_project(config: dict, task: str = SUITE_TASK, **scheduler: Any) -> ProjectDir:
    """A project owned by the OAR test user, submitting with these scheduler settings."""
    BASE.mkdir(mode=0o755, exist_ok=True)
    project = ProjectDir(BASE / uuid.uuid4().hex[:12], task)
    project.write_config(config)
    project.write_config(
        {"scheduler": {"name": "OARScheduler", **scheduler}, "use_scheduler": True}, "mlxpy.yaml"
    )
    as_oar_user(project)
    return project


def wait_for_scheduler_state(project: ProjectDir, state: str, timeout: float) -> dict:
    """The project's one ``mlxpy status`` row, once OAR says ``state``."""
    deadline = time.monotonic() + timeout
    while True:
        (row,) = json.loads(project.mlxpy("status", "--format", "json").stdout)
        if row["scheduler_state"] == state:
            return row
        assert time.monotonic() < deadline, row
        time.sleep(1)


def test_cluster_is_up():
    assert shutil.which("oarsub"), "oarsub is not installed: run scripts/clusters/oar.sh start"
    nodes = subprocess.run(["oarnodes", "-s"], capture_output=True, text=True)
    assert nodes.returncode == 0 and "Alive" in nodes.stdout, (
        f"no OAR cluster answers ({nodes.stderr.strip()}): run scripts/clusters/oar.sh start"
    )


class TestOARConformance(SchedulerSuite):
    scheduler_name = "OARScheduler"
    timeout = 240

    def project_root(self, tmp_path: Path) -> Path:
        BASE.mkdir(mode=0o755, exist_ok=True)
        return BASE / uuid.uuid4().hex[:12]

    def prepare_project(self, project: ProjectDir) -> None:
        as_oar_user(project)

    def check_job_id(self, job_id: str, array: bool) -> None:
        assert re.fullmatch(r"\d+", job_id), job_id

    def rejected_override(self) -> list[str]:
        return ["+mlxpy.scheduler.option_cmd=['-q no_such_queue']"]

    def pending_overrides(self) -> list[str]:
        return ["+mlxpy.scheduler.option_cmd=['--hold']"]  # Hold, until oarresume or oardel


def test_rejected_submission_carries_oar_message():
    project = oar_project(SUITE_CONFIG, option_cmd=["-q no_such_queue"])
    result = project.run()
    assert result.returncode == 2
    assert "oarsub failed" in result.stderr and "no_such_queue does not exist" in result.stderr
    assert [project.info(d)["status"] for d in project.run_dirs()] == ["SUBMIT_FAILED"]


def test_job_in_error_before_python_gives_oar_reason():
    """A job OAR cannot start (its stdout cannot be created) ends in ``Error``: the run,
    still SUBMITTED, becomes FAILED, and the reason is OAR's event, in the status and in the
    run's recorded error."""
    project = oar_project(SUITE_CONFIG, option_cmd=["-O /nonexistent/out"])
    assert project.run().returncode == 0
    row = wait_for_scheduler_state(project, "Error", 120)
    assert row["run_status"] == "SUBMITTED" and row["status"] == "FAILED", row
    assert row["reason"].startswith("OUTPUT_FILES: Cannot create .stdout"), row
    (run_dir,) = project.run_dirs()
    info = project.info(run_dir)
    assert info["status"] == "FAILED"
    assert "(Error: OUTPUT_FILES: Cannot create .stdout" in info["error"]["message"]


def test_walltime_kill_is_an_error_with_its_reason_not_a_cancellation():
    """No checkpoint signal: OAR kills the job at its walltime. The job ends in ``Error``
    with OAR's WALLTIME event as the reason, and is not taken for an ``oardel``."""
    project = oar_project(SUITE_CONFIG, option_cmd=["-l core=1,walltime=0:00:15"])
    assert project.run("mode=sleep", "sleep=300").returncode == 0
    row = wait_for_scheduler_state(project, "Error", 150)
    assert row["reason"] and "WALLTIME: " in row["reason"], row
    job_id = str(row["job_id"])
    assert OARScheduler().statuses([job_id])[job_id].cancelled is False
    assert row["status"] != "CANCELLED", row


def resumable_project(steps: int, walltime: str, checkpoint_s: int, *args: str) -> ProjectDir:
    project = oar_project(
        {"seed": 0, "steps": steps},
        RESUMABLE_TASK,
        checkpoint_s=checkpoint_s,
        requeue=True,
        option_cmd=[f"-l core=1,walltime={walltime}"],
    )
    result = project.run(*args)
    assert result.returncode == 0, result.stderr
    return project


def oar_job(job_id: str) -> dict:
    out = subprocess.run(
        ["oarstat", "-f", "-J", "-j", job_id], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)[job_id]


def oar_job_ended(job_id: str, timeout: float = 90) -> dict:
    """``oar_job`` once OAR has recorded the job's end: a run dir is COMPLETE a moment
    before OAR sets the job's exit code (its Finishing state)."""
    deadline = time.monotonic() + timeout
    job = oar_job(job_id)
    while job.get("exit_code") is None and time.monotonic() < deadline:
        time.sleep(1)
        job = oar_job(job_id)
    return job


def assert_resumed_without_gaps(project: ProjectDir, steps: int, count: int = 1) -> list[dict]:
    infos = project.wait(count, 200, done={"COMPLETE", "FAILED"})
    for run_dir, info in zip(project.run_dirs(), infos, strict=True):
        assert info["status"] == "COMPLETE" and info["restarts"] == 1, info
        assert info["history"][0]["status"] == "TIMEOUT"
        records = read_metrics(run_dir / "metrics" / "train.json")
        assert [r["step"] for r in records] == list(range(steps))
    return infos


def test_checkpoint_signal_requeues_as_idempotent_job():
    """A 2-task array, walltime 1:30 with the checkpoint signal 40 s before it (from ~50 s
    on: OAR checks every 10-20 s), and more steps than that leaves time for: each run
    records TIMEOUT with its checkpoint (and requeued), waits until OAR's one-minute rule
    allows a resubmission, exits with 99; OAR resubmits each idempotent task, which resumes
    its own run dir from that checkpoint without repeating a step. Status and cancel
    follow the resubmissions."""
    project = resumable_project(80, "0:01:30", 40, "seed=1,2")
    infos = assert_resumed_without_gaps(project, 80, count=2)
    assert sorted(project.config(d)["seed"] for d in project.run_dirs()) == [1, 2]
    assert all(i["history"][0].get("requeued") is True for i in infos), infos
    first_jobs = [str(i["history"][0]["job_id"]) for i in infos]
    second_jobs = [str(i["scheduler"]["job_id"]) for i in infos]
    for first_id, second_id in zip(first_jobs, second_jobs, strict=True):
        first, second = oar_job(first_id), oar_job_ended(second_id)
        assert first["state"] == "Terminated" and first["exit_code"] >> 8 == 99
        assert "idempotent" in first["types"]
        assert str(second["resubmit_job_id"]) == first_id and second["exit_code"] == 0
        assert second["array_index"] == first["array_index"]  # the task runs its own dir
    assert sorted(oar_job(j)["array_index"] for j in first_jobs) == [1, 2]

    scheduler = OARScheduler()
    states = scheduler.statuses(first_jobs)
    assert [
        (states[j].current_job_id, states[j].state, states[j].exit_code) for j in first_jobs
    ] == [(j, "Terminated", 0) for j in second_jobs]
    calls = scheduler.calls
    scheduler.cancel(first_jobs)  # every job is over: nothing to oardel
    assert scheduler.calls == calls + 2  # two oarstat to follow the resubmissions, no oardel


def test_preempted_besteffort_job_is_resubmitted_and_resumes():
    """A besteffort job with ``requeue: true`` is idempotent: when a normal job needs its
    node, OAR kills it (SIGKILL, no warning) and resubmits it. While the new job waits, the
    run shows as REQUEUED; then it resumes the run dir from the last checkpoint, and history
    records the killed attempt as LOST."""
    project = oar_project(
        {"seed": 0, "steps": 30},
        RESUMABLE_TASK,
        requeue=True,
        option_cmd=["-t besteffort", "-l host=1,walltime=0:05:00"],
    )
    assert project.run().returncode == 0
    deadline = time.monotonic() + 120
    while True:  # let it make some progress before preempting it
        (run_dir,) = project.run_dirs()
        metrics = run_dir / "metrics" / "train.json"
        if metrics.exists() and len(read_metrics(metrics)) >= 3:
            break
        assert time.monotonic() < deadline, project.info(run_dir)
        time.sleep(0.5)
    normal = subprocess.run(
        [*project.command_prefix, "oarsub", "-l", "host=1,walltime=0:01:00", "sleep 12"],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert normal.returncode == 0, normal.stdout + normal.stderr
    row = wait_for_scheduler_state(project, "Waiting", 60)  # the resubmitted job
    assert row["status"] == "REQUEUED", row
    (info,) = project.wait(1, 240, done={"COMPLETE", "FAILED"})
    assert info["status"] == "COMPLETE" and info["restarts"] == 1, info
    (earlier,) = info["history"]
    assert earlier["status"] == "LOST"
    first_job, second_job = str(earlier["job_id"]), str(info["scheduler"]["job_id"])
    assert row["job_id"] == second_job
    events = {e["type"] for e in oar_job(first_job)["events"]}
    assert {"BESTEFFORT_KILL", "RESUBMIT_JOB_AUTOMATICALLY"} <= events
    state = OARScheduler().statuses([first_job])[first_job]
    assert (state.current_job_id, state.exit_code, state.cancelled) == (second_job, 0, False)
    steps = [r["step"] for r in read_metrics(run_dir / "metrics" / "train.json")]
    # resumed from the checkpoint: nothing repeated, but for the step whose checkpoint the
    # kill may have interrupted after its metrics were flushed
    assert sorted(set(steps)) == list(range(30)) and len(steps) - len(set(steps)) <= 1


def test_checkpoint_too_early_for_requeue_then_manual_resubmit_resumes():
    """Walltime 1:00 with the checkpoint signal at ~20 s: OAR would not resubmit a job that
    ran under a minute, so the run says so, records TIMEOUT (not requeued) and exits;
    ``oarsub --resubmit`` of the ended job resumes the same run dir."""
    project = resumable_project(steps=35, walltime="0:01:00", checkpoint_s=40)
    (info,) = project.wait(1, 200)
    assert info["status"] == "TIMEOUT" and not info.get("requeued"), info
    job_id = str(info["scheduler"]["job_id"])
    deadline = time.monotonic() + 120
    while oar_job(job_id)["state"] not in ("Terminated", "Error"):
        assert time.monotonic() < deadline
        time.sleep(1)
    assert oar_job(job_id)["exit_code"] >> 8 == 128 + 12  # SIGUSR2, not OAR's 99
    (run_dir,) = project.run_dirs()
    assert "is not requeued" in (run_dir / "job.stderr").read_text()
    resubmit = subprocess.run(
        [*project.command_prefix, "oarsub", "--resubmit", job_id],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert resubmit.returncode == 0, resubmit.stdout + resubmit.stderr
    assert_resumed_without_gaps(project, 35)


def test_sweep_resume_submits_just_the_failed_point_into_its_own_run_dir():
    """A 3-point sweep whose second point fails half-way: ``mlxpy sweep resume`` (run by the
    user who launched it) submits a job for exactly that point, which resumes its run dir
    from its checkpoint; the complete points are not touched."""
    from mlxpy.sweeping.manifest import list_sweeps
    from mlxpy.testing import SWEEP_CONFIG, SWEEP_TASK

    # OAR jobs do not inherit the environment: the jobs import the mlxpy under test
    pythonpath = os.environ.get("PYTHONPATH", "")
    setup = f"export PYTHONPATH={pythonpath}" if pythonpath else ""
    project = oar_project(SWEEP_CONFIG, SWEEP_TASK, shell_config_cmd=setup)
    result = project.run("x=1,2,3", "fail_at=2")
    assert result.returncode == 0, result.stderr
    infos = project.wait(3, 240)
    assert [i["status"] for i in infos] == ["COMPLETE", "FAILED", "COMPLETE"]
    (sweep_id,) = list_sweeps(project.logs)
    runs = project.run_dirs()
    stamps = {d.name: sorted((p.name, p.stat().st_mtime_ns) for p in d.rglob("*")) for d in runs}
    first_job = infos[1]["scheduler"]["job_id"]

    resume = project.mlxpy("sweep", "resume", sweep_id)
    assert resume.returncode == 0, resume.stderr
    assert "resuming 1 of 3 points (1 FAILED)" in resume.stderr
    infos = project.wait(3, 240)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    assert project.run_dirs() == runs  # no new run dir
    resumed = infos[1]
    assert resumed["restarts"] == 1 and resumed["history"][0]["job_id"] == first_job
    assert resumed["scheduler"]["job_id"] != first_job
    assert "START 2 from 2" in (runs[1] / "job.stdout").read_text()
    steps = [r["step"] for r in read_metrics(runs[1] / "metrics" / "train.json")]
    assert steps == [0, 1, 2]
    for d in (runs[0], runs[2]):
        assert sorted((p.name, p.stat().st_mtime_ns) for p in d.rglob("*")) == stamps[d.name]
