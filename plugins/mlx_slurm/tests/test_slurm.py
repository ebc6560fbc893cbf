"""SLURMScheduler against the real single-node cluster started by scripts/clusters/slurm.sh.

These tests fail (they do not skip) when the cluster is missing: CI starts it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
from mlx_slurm import SLURMScheduler
from mlxpy.rundir.metrics import read_metrics
from mlxpy.testing import RESUMABLE_TASK, ProjectDir, SchedulerSuite

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]


def test_cluster_is_up():
    assert shutil.which("sbatch"), "sbatch is not installed: run scripts/clusters/slurm.sh start"
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    assert state.returncode == 0 and state.stdout.split(), (
        f"no SLURM cluster answers ({state.stderr.strip()}): run scripts/clusters/slurm.sh start"
    )


class TestSLURMConformance(SchedulerSuite):
    scheduler_name = "SLURMScheduler"

    def check_job_id(self, job_id: str, array: bool) -> None:
        assert re.fullmatch(r"\d+_\d+" if array else r"\d+", job_id), job_id

    def rejected_override(self) -> list[str]:
        return ["+mlxpy.scheduler.option_cmd=['--partition=no_such_partition']"]

    def pending_overrides(self) -> list[str]:
        return ["+mlxpy.scheduler.option_cmd=['--hold']"]  # PENDING (JobHeldUser)


def test_rejected_submission_carries_sbatch_message(tmp_path):
    project = ProjectDir(tmp_path / "p")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config(
        {
            "scheduler": {
                "name": "SLURMScheduler",
                "option_cmd": ["--partition=no_such_partition"],
            },
            "use_scheduler": True,
        },
        "mlxpy.yaml",
    )
    result = project.run("seed=1,2")
    assert result.returncode == 2
    assert "sbatch --array failed" in result.stderr and "invalid partition" in result.stderr
    assert [project.info(d)["status"] for d in project.run_dirs()] == ["SUBMIT_FAILED"] * 2


def test_sweeps_larger_than_max_array_size_are_split(tmp_path, monkeypatch):
    """Three runs with MaxArraySize pretended to be 2: two arrays, ids from both."""
    monkeypatch.setattr(SLURMScheduler, "max_array_size", lambda self: 2)
    from mlxpy.testing import SUITE_TASK

    project = ProjectDir(tmp_path / "p", SUITE_TASK)
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config(
        {"scheduler": {"name": "SLURMScheduler", "array_throttle": 1}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    # the limit is patched in this process only: submit in-process through the launcher
    import sys

    monkeypatch.setattr(sys, "argv", ["main.py", "seed=1,2,3"])
    monkeypatch.chdir(project.root)
    namespace: dict = {"__file__": str(project.root / "main.py"), "__name__": "bench_main"}
    exec(
        compile((project.root / "main.py").read_text(), str(project.root / "main.py"), "exec"),
        namespace,
    )
    namespace["task"]()
    infos = project.wait(3, 180)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    arrays = {i["scheduler"]["job_id"].split("_")[0] for i in infos}
    tasks = [i["scheduler"]["job_id"].split("_")[1] for i in infos]
    assert len(arrays) == 2 and tasks == ["0", "1", "0"]


def test_time_limit_requeues_and_resumes(tmp_path):
    """A 1-minute job warned 50 s before its limit: the run records TIMEOUT, requeues
    itself, and the requeued job continues the same run dir from the checkpoint.

    SLURM checks signal times coarsely (the signal may come up to a minute early), so an
    incarnation may be warned anywhere in its first ~30 s, even before Python starts: the
    number of restarts varies; what must hold is asserted for any number."""
    project = ProjectDir(tmp_path / "p", RESUMABLE_TASK)
    project.write_config({"seed": 0, "steps": 30})
    project.write_config(
        {
            "scheduler": {
                "name": "SLURMScheduler",
                "requeue": True,
                "signal_grace_s": 50,
                "option_cmd": ["--time=1"],
            },
            "use_scheduler": True,
        },
        "mlxpy.yaml",
    )
    result = project.run()
    assert result.returncode == 0, result.stderr
    (run_dir,) = project.run_dirs()
    (info,) = project.wait(1, 900, done={"COMPLETE", "FAILED"})
    assert info["status"] == "COMPLETE", info
    restarts = info["restarts"]
    assert restarts >= 1
    assert {entry["status"] for entry in info["history"]} == {"TIMEOUT"}
    out = (run_dir / "job.stdout").read_text()
    starts = re.findall(r"^start at (\d+) restarts (\d+)$", out, re.M)
    assert int(starts[-1][1]) == restarts  # the incarnation that completed
    assert any(int(step) > 0 for step, _ in starts[1:])  # a restart resumed a checkpoint
    steps = [r["step"] for r in read_metrics(run_dir / "metrics" / "train.json")]
    assert steps == list(range(30))  # continued from the checkpoint, nothing repeated
    status = json.loads(project.mlxpy("status", "--format", "json").stdout)
    assert status[0]["scheduler_state"] == "COMPLETED"


@pytest.mark.parametrize("count", [3])
def test_status_is_one_scheduler_call(tmp_path, count):
    scheduler = SLURMScheduler()
    ids = []
    script = tmp_path / "s.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH --output={tmp_path}/slurm-%j.out\nsleep 1\n")
    for _ in range(count):
        ids.append(scheduler.submit(script))
    calls_before = scheduler.calls
    states = scheduler.statuses(ids)
    assert scheduler.calls == calls_before + 1
    assert set(states) == set(ids)
    time.sleep(0.1)


def test_sweep_resume_submits_just_the_failed_point_into_its_own_run_dir(tmp_path):
    """A 3-point sweep whose second point fails half-way: ``mlxpy sweep resume`` submits a
    job for exactly that point, which resumes its run dir from its checkpoint; the complete
    points are not touched."""
    from mlxpy.sweeping.manifest import list_sweeps
    from mlxpy.testing import SWEEP_CONFIG, SWEEP_TASK

    project = ProjectDir(tmp_path / "p", SWEEP_TASK)
    project.write_config(SWEEP_CONFIG)
    project.write_config(
        {"scheduler": {"name": "SLURMScheduler"}, "use_scheduler": True}, "mlxpy.yaml"
    )
    result = project.run("x=1,2,3", "fail_at=2")
    assert result.returncode == 0, result.stderr
    infos = project.wait(3, 180)
    assert [i["status"] for i in infos] == ["COMPLETE", "FAILED", "COMPLETE"]
    (sweep_id,) = list_sweeps(project.logs)
    runs = project.run_dirs()
    stamps = {d.name: sorted((p.name, p.stat().st_mtime_ns) for p in d.rglob("*")) for d in runs}
    first_job = infos[1]["scheduler"]["job_id"]

    resume = project.mlxpy("sweep", "resume", sweep_id)
    assert resume.returncode == 0, resume.stderr
    assert "resuming 1 of 3 points (1 FAILED)" in resume.stderr
    assert f"sweep {sweep_id}: 1 job: 1 SUBMITTED" in resume.stderr
    infos = project.wait(3, 180)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    assert project.run_dirs() == runs  # no new run dir
    resumed = infos[1]
    assert resumed["restarts"] == 1 and resumed["history"][0]["job_id"] == first_job
    assert resumed["history"][0]["status"] == "FAILED"
    assert resumed["scheduler"]["job_id"] != first_job
    assert "START 2 from 2" in (runs[1] / "job.stdout").read_text()
    steps = [r["step"] for r in read_metrics(runs[1] / "metrics" / "train.json")]
    assert steps == [0, 1, 2]
    for d in (runs[0], runs[2]):
        assert sorted((p.name, p.stat().st_mtime_ns) for p in d.rglob("*")) == stamps[d.name]
    status = json.loads(project.mlxpy("sweep", "status", sweep_id, "--format", "json").stdout)
    assert [p["status"] for p in status["points"]] == ["COMPLETE"] * 3
    assert status["points"][1]["job_id"] == resumed["scheduler"]["job_id"]
