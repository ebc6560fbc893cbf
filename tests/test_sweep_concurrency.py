"""Who else is at work on a sweep: a point's run killed with ``kill -9`` is LOST at once
(its run lock, dropped by the kernel, says so on its host: no waiting for a stale
heartbeat). Real ``python main.py`` launches and real ``mlxpy`` commands."""

from __future__ import annotations

import json

import pytest
from mlxpy.sweeping.manifest import list_sweeps
from mlxpy.testing import SWEEP_CONFIG, SWEEP_TASK, ProjectDir


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
