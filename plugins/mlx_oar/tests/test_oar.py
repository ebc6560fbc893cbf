"""OARScheduler against the real single-node OAR 2.5 cluster started by
tests/clusters/oar.sh. OAR refuses jobs from root, so the tests launch as the unprivileged
user that script creates, from a directory that user owns. They fail, not skip, without the
cluster: CI starts it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from mlxpy.testing import RESUMABLE_TASK, ProjectDir, SchedulerSuite

OAR_USER = os.environ.get("OAR_TEST_USER", "mlxpyoar")
BASE = Path("/var/tmp/mlxpy-oar-tests")


def as_oar_user(project: ProjectDir) -> None:
    shutil.chown(BASE, OAR_USER)
    subprocess.run(["chown", "-R", OAR_USER, str(project.root)], check=True)
    project.command_prefix = ["runuser", "-u", OAR_USER, "--"]
    project.env["HOME"] = f"/home/{OAR_USER}"


def test_cluster_is_up():
    assert shutil.which("oarsub"), "oarsub is not installed: run tests/clusters/oar.sh start"
    nodes = subprocess.run(["oarnodes", "-s"], capture_output=True, text=True)
    assert nodes.returncode == 0 and "Alive" in nodes.stdout, (
        f"no OAR cluster answers ({nodes.stderr.strip()}): run tests/clusters/oar.sh start"
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


def test_rejected_submission_carries_oar_message():
    BASE.mkdir(mode=0o755, exist_ok=True)
    project = ProjectDir(BASE / uuid.uuid4().hex[:12])
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config(
        {
            "scheduler": {"name": "OARScheduler", "option_cmd": ["-q no_such_queue"]},
            "use_scheduler": True,
        },
        "mlxpy.yaml",
    )
    as_oar_user(project)
    result = project.run()
    assert result.returncode == 2
    assert "oarsub failed" in result.stderr and "no_such_queue does not exist" in result.stderr
    assert [project.info(d)["status"] for d in project.run_dirs()] == ["SUBMIT_FAILED"]


def test_walltime_checkpoint_then_resubmit_resumes():
    """A 1-minute walltime with a checkpoint signal 40 s before it: the run records TIMEOUT
    with its checkpoint; resubmitting the ended job (oarsub --resubmit) resumes the same run
    dir from that checkpoint, without repeating a step."""
    import time

    BASE.mkdir(mode=0o755, exist_ok=True)
    project = ProjectDir(BASE / uuid.uuid4().hex[:12], RESUMABLE_TASK)
    project.write_config({"seed": 0, "steps": 35})
    project.write_config(
        {
            "scheduler": {
                "name": "OARScheduler",
                "checkpoint_s": 40,
                "option_cmd": ["-l core=1,walltime=0:01:00"],
            },
            "use_scheduler": True,
        },
        "mlxpy.yaml",
    )
    as_oar_user(project)
    result = project.run()
    assert result.returncode == 0, result.stderr
    (run_dir,) = project.run_dirs()
    (info,) = project.wait(1, 200)
    assert info["status"] == "TIMEOUT", info
    job_id = str(info["scheduler"]["job_id"])
    deadline = time.monotonic() + 120
    while True:
        (row,) = __import__("json").loads(project.mlxpy("status", "--format", "json").stdout)
        if row["scheduler_state"] in ("Terminated", "Error"):
            break
        assert time.monotonic() < deadline, row
        time.sleep(1)
    resubmit = subprocess.run(
        [*project.command_prefix, "oarsub", "--resubmit", job_id],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert resubmit.returncode == 0, resubmit.stdout + resubmit.stderr
    (info,) = project.wait(1, 200, done={"COMPLETE", "FAILED"})
    assert info["status"] == "COMPLETE" and info["restarts"] == 1, info
    assert info["history"][0]["status"] == "TIMEOUT"
    from mlxpy.metrics import read_metrics

    steps = [r["step"] for r in read_metrics(run_dir / "metrics" / "train.json")]
    assert steps == list(range(35))
