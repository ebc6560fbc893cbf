"""Who else is at work on a sweep: a second resume started while one runs refuses (never a
point run twice); points claimed by a submitter killed before it submitted them are
SUBMIT_FAILED, and resumed; a point's run killed with ``kill -9`` is LOST at once (its run lock,
dropped by the kernel, says so on its host: no waiting for a stale heartbeat). Real
``python main.py`` launches and real ``mlxpy`` commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlxpy.rundir.layout import RunDir
from mlxpy.sweeping.manifest import list_sweeps
from mlxpy.testing import SWEEP_CONFIG, SWEEP_TASK, ProjectDir

# SWEEP_TASK with a nap before each point: a resume of three points lasts seconds
SLOW_SWEEP_TASK = SWEEP_TASK.replace("import os, signal", "import os, signal, time").replace(
    '    print("START"', '    time.sleep(c.nap)\n    print("START"'
)


@pytest.fixture
def project(tmp_path):
    project = ProjectDir(tmp_path / "p", SWEEP_TASK)
    project.write_config(SWEEP_CONFIG)
    return project


def statuses(project: ProjectDir, sweep_id: str) -> list[str]:
    result = project.mlxpy("sweep", "status", sweep_id, "--format", "json")
    assert result.returncode == 0, result.stderr
    return [p["status"] for p in json.loads(result.stdout)["points"]]


def test_a_point_killed_on_this_host_is_lost_at_once_and_resumed(project):
    # the default heartbeat (10 s): a stale-heartbeat rule would call it RUNNING for 30 s
    first = project.run("x=1,2", "kill_at=2")
    assert first.returncode == -9, first.stderr
    (sweep_id,) = list_sweeps(project.logs)
    assert statuses(project, sweep_id) == ["COMPLETE", "LOST"]  # no sleep
    resume = project.mlxpy("sweep", "resume", sweep_id)
    assert resume.returncode == 0, resume.stderr
    assert "resuming 1 of 2 points (1 LOST)" in resume.stderr
    assert "START 2 from 2" in resume.stdout and "START 1" not in resume.stdout
    assert statuses(project, sweep_id) == ["COMPLETE", "COMPLETE"]


def fingerprint(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def test_two_resumes_started_together_run_each_point_once(tmp_path):
    project = ProjectDir(tmp_path / "p", SLOW_SWEEP_TASK)
    project.write_config({**SWEEP_CONFIG, "nap": 0})
    assert project.run("x=1,2,3,4", "kill_at=2").returncode == -9
    (sweep_id,) = list_sweeps(project.logs)
    assert statuses(project, sweep_id) == ["COMPLETE", "LOST", "MISSING", "MISSING"]
    complete = fingerprint(project.run_dirs()[0])
    project.write_config({**SWEEP_CONFIG, "nap": 0.5})
    command = [sys.executable, "-m", "mlxpy.cli", "sweep", "resume", sweep_id]
    resumes = [
        subprocess.Popen(
            command, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in resumes]
    codes = sorted(proc.returncode for proc in resumes)
    assert codes == [0, 2], outputs
    refused = next(
        err for proc, (_, err) in zip(resumes, outputs, strict=True) if proc.returncode == 2
    )
    assert re.search(
        rf"mlxpy: error: sweep {sweep_id} is being resumed by pid \d+ on host \S+; wait for it",
        refused,
    ), refused
    started = re.findall(r"START (\d)", "".join(out for out, _ in outputs))
    assert sorted(started) == ["2", "3", "4"]  # each resumable point once, the complete one not
    assert len(project.run_dirs()) == 4
    assert fingerprint(project.run_dirs()[0]) == complete
    assert statuses(project, sweep_id) == ["COMPLETE"] * 4
    info = project.info(project.run_dirs()[1])
    assert info["restarts"] == 1 and [h["status"] for h in info["history"]] == ["LOST"]


def test_a_resume_skips_a_point_another_process_completed_since_its_plan(project):
    """The check a sequential resume makes before each point, on the files a real run left:
    the point's run was completed by a forced-id run after the plan."""
    from mlxpy.sweeping.manifest import SweepManifest
    from mlxpy.sweeping.resume import PointCheck, plan_resume

    assert project.run("x=1,2,3", "kill_at=2").returncode == -9
    (sweep_id,) = list_sweeps(project.logs)
    plan = plan_resume(project.logs, SweepManifest.read(project.logs, sweep_id))
    assert [(s.index, s.status) for s in plan.todo] == [(1, "LOST"), (2, "MISSING")]
    check = PointCheck(plan)
    assert all(check.still_due(check.now(s.index, s.overrides)) for s in plan.todo)
    lost = plan.todo[1 - 1]
    forced = project.run(*lost.overrides, f"+mlxpy.logger.forced_log_id={lost.log_id}")
    assert forced.returncode == 0, forced.stderr
    state = check.now(lost.index, lost.overrides)
    assert state.status == "COMPLETE" and not check.still_due(state)
    assert RunDir(project.logs / str(lost.log_id)).info.exists()


# imported first by the launch only (its PYTHONPATH): the submitting process is killed
# with SIGKILL once every run dir is claimed, before anything is submitted
KILL_IN_SUBMIT = """
import os, signal
import mlxpy.scheduling.submission as submission

def submit(self):
    os.kill(os.getpid(), signal.SIGKILL)

submission.Submission.submit = submit
"""


def test_points_claimed_by_a_killed_submitter_are_resumed(project, tmp_path):
    project.write_config(
        {"scheduler": {"name": "LocalScheduler", "max_workers": 2}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_IN_SUBMIT)
    project.env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    killed = project.run("x=1,2,3")
    project.env = {}
    assert killed.returncode == -9, killed.stderr
    (sweep_id,) = list_sweeps(project.logs)
    assert [project.info(d)["status"] for d in project.run_dirs()] == ["SUBMITTED"] * 3
    assert statuses(project, sweep_id) == ["SUBMIT_FAILED"] * 3
    resume = project.mlxpy("sweep", "resume", sweep_id)
    assert resume.returncode == 0, resume.stderr
    assert "resuming 3 of 3 points (3 SUBMIT_FAILED)" in resume.stderr
    deadline = time.monotonic() + 90
    while (now := statuses(project, sweep_id)) != ["COMPLETE"] * 3:
        assert time.monotonic() < deadline and "SUBMIT_FAILED" not in now, now
        time.sleep(0.5)
    assert len(project.run_dirs()) == 3  # each point in the run dir it was claimed in
