"""Resuming a sweep: exactly the points that are missing or ended without completing run
again, each in its own run dir with its checkpoint reloaded; completed points are not
touched. Real launches of ``SWEEP_TASK``: a point is killed with SIGKILL mid-run (LOST),
another raises (FAILED), sequentially and under LocalScheduler."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlxpy.rundir.layout import RunDir
from mlxpy.sweeping.manifest import list_sweeps, read_journal
from mlxpy.testing import SWEEP_CONFIG, SWEEP_TASK, ProjectDir

# a fast heartbeat: a killed run is told LOST (stale heartbeat, free lock) within a second
SWEEP = ("x=1,2,3,4", "fail_at=2", "kill_at=3", "+mlxpy.logger.heartbeat_interval_s=0.2")
LOCAL = {"scheduler": {"name": "LocalScheduler", "max_workers": 2}, "use_scheduler": True}


@pytest.fixture
def project(tmp_path):
    project = ProjectDir(tmp_path / "p", SWEEP_TASK)
    project.write_config(SWEEP_CONFIG)
    return project


def by_x(project: ProjectDir) -> dict[int, Path]:
    return {project.config(d)["x"]: d for d in project.run_dirs()}


def fingerprint(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file of a run dir with its size and mtime: what "untouched" means."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def steps(run_dir: Path) -> list[int]:
    lines = (RunDir(run_dir).metrics / "train.json").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


def sweep_points(project: ProjectDir, sweep_id: str) -> list[dict]:
    result = project.mlxpy("sweep", "status", sweep_id, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["points"]


def wait_sweep(project: ProjectDir, sweep_id: str, timeout: float = 90) -> list[dict]:
    """Until no point of the sweep is queued or running."""
    deadline = time.monotonic() + timeout
    while True:
        points = sweep_points(project, sweep_id)
        if all(p["status"] not in ("SUBMITTED", "RUNNING") for p in points):
            return points
        assert time.monotonic() < deadline, points
        time.sleep(0.5)


def test_resume_reruns_exactly_the_lost_failed_and_missing_points(project):
    first = project.run(*SWEEP)
    assert first.returncode == -9, first.stderr  # the launch itself ran the killed point
    (sweep_id,) = list_sweeps(project.logs)
    runs = by_x(project)
    assert sorted(runs) == [1, 2, 3]  # x=4 never started
    complete = fingerprint(runs[1])
    uid = project.info(runs[1])["uid"]
    time.sleep(1)  # the killed run's heartbeat goes stale
    statuses = [p["status"] for p in sweep_points(project, sweep_id)]
    assert statuses == ["COMPLETE", "FAILED", "LOST", "MISSING"]

    result = project.mlxpy("sweep", "resume", sweep_id)
    assert result.returncode == 0, result.stderr
    assert "resuming 3 of 4 points (1 FAILED, 1 LOST, 1 MISSING)" in result.stderr
    # each resumed point continued from its checkpoint, in its own run dir
    assert "START 2 from 2" in result.stdout and "START 3 from 2" in result.stdout
    assert "START 4 from 0" in result.stdout and "START 1" not in result.stdout
    after = by_x(project)
    assert {x: d.name for x, d in after.items()} == {1: "1", 2: "2", 3: "3", 4: "4"}
    for x in (2, 3):
        info = project.info(after[x])
        assert info["status"] == "COMPLETE" and info["restarts"] == 1
        assert [h["status"] for h in info["history"]] == ["FAILED" if x == 2 else "LOST"]
        assert steps(after[x]) == [0, 1, 2]  # the first attempt's metrics kept
    assert steps(after[4]) == [0, 1, 2]
    assert fingerprint(after[1]) == complete and project.info(after[1])["uid"] == uid
    journal = read_journal(project.logs, sweep_id)
    assert {p: e.log_id for p, e in journal.items()} == {0: 1, 1: 2, 2: 3, 3: 4}
    assert [p["status"] for p in sweep_points(project, sweep_id)] == ["COMPLETE"] * 4

    again = project.mlxpy("sweep", "resume", sweep_id)  # nothing left: nothing runs
    assert again.returncode == 0, again.stderr
    assert "nothing to resume (4 COMPLETE)" in again.stderr
    assert "START" not in again.stdout and len(project.run_dirs()) == 4


def test_relaunching_with_sweep_resume_true_is_the_same_resume(project):
    assert project.run(*SWEEP).returncode == -9
    time.sleep(1)
    only_failed = project.run(*SWEEP, "+mlxpy.sweep.resume=true", "+mlxpy.sweep.only=[failed]")
    assert only_failed.returncode == 0, only_failed.stderr
    assert "START 2 from 2" in only_failed.stdout
    assert "START 3" not in only_failed.stdout and "START 4" not in only_failed.stdout
    rest = project.run(*SWEEP, "+mlxpy.sweep.resume=true")
    assert rest.returncode == 0, rest.stderr
    assert "START 3 from 2" in rest.stdout and "START 4 from 0" in rest.stdout
    assert "START 2" not in rest.stdout
    assert len(list_sweeps(project.logs)) == 1 and len(project.run_dirs()) == 4


def test_resume_true_without_an_earlier_sweep_starts_it(project):
    result = project.run("x=1,2", "+mlxpy.sweep.resume=true")
    assert result.returncode == 0, result.stderr
    assert "no earlier sweep of this command" in result.stderr
    assert len(project.run_dirs()) == 2 and len(list_sweeps(project.logs)) == 1


def test_a_point_whose_run_dir_is_gone_gets_a_new_one(project):
    import shutil

    assert project.run("x=1,2,3").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    shutil.rmtree(project.logs / "2")
    result = project.mlxpy("sweep", "resume", sweep_id)
    assert result.returncode == 0, result.stderr
    assert "resuming 1 of 3 points (1 MISSING)" in result.stderr
    assert {x: d.name for x, d in by_x(project).items()} == {1: "1", 2: "4", 3: "3"}


def test_only_names_statuses_a_resume_can_run(project):
    assert project.run("x=1,2").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    for only in ("complete", "running", "bogus"):
        result = project.mlxpy("sweep", "resume", sweep_id, "--only", only)
        assert result.returncode == 2 and "mlxpy: error: " in result.stderr, result.stderr
    relaunch = project.run("x=1,2", "+mlxpy.sweep.resume=true", "+mlxpy.sweep.only=[complete]")
    assert relaunch.returncode == 2 and "only names unknown statuses" in relaunch.stderr


def test_local_scheduler_resume_submits_one_array_of_exactly_those_points(project):
    project.write_config(LOCAL, "mlxpy.yaml")
    first = project.run(*SWEEP)
    assert first.returncode == 0, first.stderr
    (sweep_id,) = list_sweeps(project.logs)
    points = wait_sweep(project, sweep_id)
    assert [p["status"] for p in points] == ["COMPLETE", "FAILED", "LOST", "COMPLETE"]
    runs = by_x(project)
    untouched = {x: fingerprint(runs[x]) for x in (1, 4)}
    arrays = set((project.logs / ".mlxpy-arrays").glob("*.sh"))
    old_jobs = {p["index"]: p["job_id"] for p in points}

    result = project.mlxpy("sweep", "resume", sweep_id)
    assert result.returncode == 0, result.stderr
    assert "resuming 2 of 4 points (1 FAILED, 1 LOST)" in result.stderr
    assert f"sweep {sweep_id}: 2 jobs: 2 SUBMITTED" in result.stderr
    new_arrays = set((project.logs / ".mlxpy-arrays").glob("*.sh")) - arrays
    assert len(new_arrays) == 1  # one array of just the two points
    for x in (2, 3):  # re-claimed at submission: SUBMITTED again, a new record and script
        info = project.info(runs[x])
        assert info["status"] in ("SUBMITTED", "RUNNING", "COMPLETE")
        assert info["scheduler"]["job_id"] != old_jobs[x - 1]
        assert info["scheduler"]["array_script"] == str(next(iter(new_arrays)))

    points = wait_sweep(project, sweep_id)
    assert [p["status"] for p in points] == ["COMPLETE"] * 4
    assert [p["log_id"] for p in points] == [int(runs[x].name) for x in (1, 2, 3, 4)]
    assert len(project.run_dirs()) == 4
    for x in (2, 3):
        info = project.info(runs[x])
        assert info["restarts"] == 1 and info["history"][0]["job_id"] == old_jobs[x - 1]
        assert steps(runs[x]) == [0, 1, 2]
        assert f"START {x} from 2" in RunDir(runs[x]).root.joinpath("job.stdout").read_text()
    assert {x: fingerprint(runs[x]) for x in (1, 4)} == untouched
    manifest = json.loads((project.logs / ".sweeps" / sweep_id / "sweep.json").read_text())
    assert [p["job_id"] for p in manifest["points"]] == [p["job_id"] for p in points]


def test_a_point_cancelled_while_queued_is_resumed(tmp_path):
    """Its run stays SUBMITTED on disk: the scheduler says the job was cancelled (one call),
    so the point is CANCELLED, and resumable in its own run dir."""
    from mlxpy.testing import SUITE_TASK

    project = ProjectDir(tmp_path / "p", SUITE_TASK)
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "sleep", "sleep": 1})
    project.write_config(
        {**LOCAL, "scheduler": {**LOCAL["scheduler"], "max_workers": 1}}, "mlxpy.yaml"
    )
    assert project.run("seed=1,2,3").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    cancel = project.mlxpy("cancel", "3")  # the third job waits for the one worker
    assert cancel.returncode == 0, cancel.stderr
    points = wait_sweep(project, sweep_id)
    assert [p["status"] for p in points] == ["COMPLETE", "COMPLETE", "CANCELLED"]
    resume = project.mlxpy("sweep", "resume", sweep_id)
    assert resume.returncode == 0, resume.stderr
    assert "resuming 1 of 3 points (1 CANCELLED)" in resume.stderr
    points = wait_sweep(project, sweep_id)
    assert [p["status"] for p in points] == ["COMPLETE"] * 3
    assert [p["log_id"] for p in points] == [1, 2, 3] and len(project.run_dirs()) == 3
