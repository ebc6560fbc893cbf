"""A small study on the real SLURM test cluster (scripts/clusters/slurm.sh): the workers are
one array, each task asks, runs and tells until the study has its trials. Fails, never
skips, without the cluster."""

from __future__ import annotations

import json
import re
import time

import pytest
from mlxpy.testing import OBJECTIVE_TASK, ProjectDir

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]


def test_two_array_workers_run_a_four_trial_study(tmp_path):
    project = ProjectDir(tmp_path / "proj", OBJECTIVE_TASK)
    project.write_config({"lr": 0.1})
    project.write_config(
        {"use_scheduler": True, "scheduler": {"name": "SLURMScheduler"}}, "mlxpy.yaml"
    )
    result = project.run(
        "lr=0.1,0.03,0.01,0.003",
        "+mlxpy.sweep.name=OptunaSweeper",
        "+mlxpy.sweep.trials=4",
        "+mlxpy.sweep.workers=2",
        "+mlxpy.sweep.objective=val.loss.min",
    )
    assert result.returncode == 0, result.stderr
    assert "submitted 2 worker(s) to SLURMScheduler" in result.stderr
    (jobs_file,) = (project.logs / ".sweeps").glob("*/workers/*/jobs.json")
    jobs = json.loads(jobs_file.read_text())
    assert len(jobs) == 2 and all(re.fullmatch(r"\d+_\d+", j) for j in jobs), jobs
    assert len({j.split("_")[0] for j in jobs}) == 1  # one array
    infos = project.wait(4, timeout=240)
    time.sleep(1)  # a worker that found the study full leaves no run behind
    infos = [project.info(d) for d in project.run_dirs()]
    assert len(infos) == 4 and [i["status"] for i in infos] == ["COMPLETE"] * 4, infos
    assert sorted(i["sweep_point"] for i in infos) == [0, 1, 2, 3]
    assert len({i["sweep_id"] for i in infos}) == 1
    assert {i["scheduler"]["job_id"] for i in infos} <= set(jobs)
    assert all(i["scheduler"]["name"] == "SLURMScheduler" for i in infos)


def test_an_adaptive_sweep_of_jobs_of_several_tasks_is_refused(tmp_path):
    """Each worker would start once per task, all asking for trials: refused before any
    job is submitted, with what to do instead (exit status 2)."""
    project = ProjectDir(tmp_path / "proj", OBJECTIVE_TASK)
    project.write_config({"lr": 0.1})
    project.write_config(
        {"use_scheduler": True, "scheduler": {"name": "SLURMScheduler", "ntasks": 2}},
        "mlxpy.yaml",
    )
    result = project.run(
        "lr=0.1,0.03",
        "+mlxpy.sweep.name=OptunaSweeper",
        "+mlxpy.sweep.trials=2",
        "+mlxpy.sweep.objective=val.loss.min",
    )
    assert result.returncode == 2, result.stderr
    assert "one worker per task" in result.stderr and "planned sweep" in result.stderr
    assert not list((project.logs / ".sweeps").glob("*/workers/*"))
