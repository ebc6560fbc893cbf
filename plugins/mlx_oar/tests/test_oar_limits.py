"""Cluster limits on the real single-node OAR 2.5 cluster (scripts/clusters/oar.sh):
``sweep.max_running`` as chains of jobs linked with ``oarsub -a`` (OAR has no array
throttle), ``sweep.pack``, the cap on submitted jobs, and a whole sweep's status in one
``oarstat`` call. Jobs are submitted as the OAR test user (see test_oar.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from test_oar import SUITE_CONFIG, oar_project

pytestmark = [pytest.mark.cluster, pytest.mark.oar]

HOLD = "+mlxpy.scheduler.option_cmd=['--hold']"
COUNTING_SHIM = """#!/bin/sh
echo "$(basename "$0")" >> {log}
exec {real} "$@"
"""


def job_ids(project) -> list[str]:
    return [project.info(d)["scheduler"]["job_id"] for d in project.run_dirs()]


def oarstat(ids: list[str]) -> dict:
    args = ["oarstat", "-f", "-J"]
    for job_id in ids:
        args += ["-j", job_id]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def cancel(project) -> None:
    ids = sorted(set(job_ids(project)))
    if ids:
        subprocess.run(["oardel", *ids], capture_output=True, check=False)


def test_max_running_submits_chains_linked_by_anterior_jobs():
    """5 held points, max_running 2: two chains; each job after the first two waits for
    the job two before it (OAR's dependencies)."""
    project = oar_project(SUITE_CONFIG)
    try:
        result = project.run("seed=range(1,6)", "+mlxpy.sweep.max_running=2", HOLD)
        assert result.returncode == 0, result.stderr
        ids = job_ids(project)
        assert len(set(ids)) == 5  # one job each: an OAR array cannot be throttled
        jobs = oarstat(ids)
        dependencies = [[str(d) for d in jobs[i].get("dependencies") or []] for i in ids]
        assert dependencies == [[], [], [ids[0]], [ids[1]], [ids[2]]]
    finally:
        cancel(project)


def test_max_running_one_runs_the_points_one_at_a_time():
    project = oar_project(SUITE_CONFIG)
    result = project.run("seed=1,2,3", "+mlxpy.sweep.max_running=1", "mode=sleep", "sleep=1")
    assert result.returncode == 0, result.stderr
    infos = sorted(project.wait(3, 240), key=lambda i: i["start_time"])
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    spans = [
        (datetime.fromisoformat(i["start_time"]), datetime.fromisoformat(i["end_time"]))
        for i in infos
    ]
    assert all(spans[n][1] <= spans[n + 1][0] for n in range(2)), spans


def test_pack_runs_three_points_in_one_job():
    project = oar_project(SUITE_CONFIG)
    result = project.run("seed=1,2,3", "+mlxpy.sweep.pack=3")
    assert result.returncode == 0, result.stderr
    infos = project.wait(3, 240)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    (job_id,) = {i["scheduler"]["job_id"] for i in infos}
    for info in infos:
        seed = project.config(Path(info["log_dir"]))["seed"]
        assert f"RUN committed 0.1 {seed} ''" in (Path(info["log_dir"]) / "job.stdout").read_text()


def test_a_sweep_over_the_submit_cap_is_refused_before_any_run_dir():
    project = oar_project(SUITE_CONFIG, max_submitted=2)
    result = project.run("seed=1,2,3")
    assert result.returncode == 2
    assert "this sweep needs 3 scheduler jobs" in result.stderr
    assert "+mlxpy.sweep.pack=2" in result.stderr
    assert project.run_dirs() == []


def test_status_of_a_20_point_sweep_is_one_oarstat_call():
    """``mlxpy status`` of 20 held jobs: one ``oarstat`` (the real command on PATH, wrapped
    to count its calls, where the OAR test user can run it)."""
    project = oar_project(SUITE_CONFIG)
    bin_dir, log = project.root / "bin", project.root / "calls.log"
    bin_dir.mkdir(mode=0o755)
    (bin_dir / "oarstat").write_text(COUNTING_SHIM.format(log=log, real=shutil.which("oarstat")))
    (bin_dir / "oarstat").chmod(0o755)
    try:
        result = project.run("seed=range(0,20)", HOLD)
        assert result.returncode == 0, result.stderr
        log.write_text("")
        log.chmod(0o666)
        project.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
        rows = json.loads(project.mlxpy("status", "--format", "json").stdout)
        assert len(rows) == 20 and {r["scheduler_state"] for r in rows} == {"Hold"}
        assert log.read_text().split() == ["oarstat"]
    finally:
        cancel(project)
