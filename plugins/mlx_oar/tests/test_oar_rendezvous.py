"""``rendezvous: true``: an OAR job of several cores or nodes exports MASTER_ADDR and
MASTER_PORT for the processes its task starts; OAR has no launcher of its own to add.
Without a cluster: the script's lines run in a real shell with OAR's variables set as a job
of two hosts would see them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlx_oar.scheduler import OARScheduler, several_resources
from mlxpy import ScheduledJob
from mlxpy.scheduling import job_script
from mlxpy.testing import ProjectDir

pytestmark = pytest.mark.oar

COMMAND = [sys.executable, "main.py"]


def run_script(tmp_path: Path, scheduler: OARScheduler) -> str:
    job = ScheduledJob(1, tmp_path / "1", [], "main-1")
    return job_script.run_script(scheduler, job, COMMAND, tmp_path, {})


def test_without_rendezvous_the_script_is_as_before(tmp_path):
    text = run_script(tmp_path, OARScheduler(option_cmd=["-l nodes=2/core=2"]))
    assert "MASTER_" not in text
    assert f"\n{' '.join(COMMAND)} &\n" in text  # the task started by the script itself


def test_rendezvous_exports_the_first_node_and_a_port_from_the_job_id(tmp_path):
    text = run_script(tmp_path, OARScheduler(rendezvous=True, option_cmd=["-l nodes=2/core=1"]))
    assert f"\n{' '.join(COMMAND)} &\n" in text  # no launcher: the task dispatches itself
    start, end = text.index("MASTER_ADDR=$("), text.index("\nexport MASTER_PORT\n")
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("host-a\nhost-a\nhost-b\nhost-b\n")  # one line per core
    setup = text[start:end] + '\nexport MASTER_PORT\necho "$MASTER_ADDR $MASTER_PORT"\n'
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTER_")}
    env |= {"OAR_NODEFILE": str(nodefile), "OAR_JOB_ID": "30123"}
    result = subprocess.run(["bash", "-c", setup], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    addr, port = result.stdout.split()
    assert addr == "host-a"
    assert int(port) - (17000 + 30123 % 15000) in range(50)  # the next one up when in use


@pytest.mark.parametrize(
    ("option_cmd", "several"),
    [
        ([], False),
        (["-l core=1,walltime=1:00:00"], False),
        (["-l core=2,walltime=1:00:00"], True),
        (["-l nodes=2/core=1"], True),
        (["-l", "host=1/core=ALL"], True),
        (["--resource=core=4"], True),
        (["-t besteffort", "-l core=1"], False),
    ],
)
def test_several_resources_are_read_from_the_l_requests(option_cmd, several):
    assert several_resources(option_cmd) is several


def test_rendezvous_for_one_core_is_refused_with_status_2(tmp_path):
    with pytest.raises(ValueError, match="rendezvous: true is for a job of several cores"):
        OARScheduler(rendezvous=True, option_cmd=["-l core=1"])
    project = ProjectDir(tmp_path / "p")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config(
        {"scheduler": {"name": "OARScheduler", "rendezvous": True}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    result = project.run()
    assert result.returncode == 2 and "scheduler.rendezvous=True" in result.stderr, result.stderr
    assert "-l core=2" in result.stderr and project.run_dirs() == []


def test_an_oar_job_is_a_job_without_ranks():
    from mlx_oar.scheduler import OARScheduler
    from mlxpy.distributed import detect

    task = OARScheduler.task_environment({"OAR_JOB_ID": "42", "OAR_NODEFILE": "/x"})
    assert task.job == "oar:42" and task.rank is None
    env = {"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none", "OAR_JOB_ID": "42"}
    assert detect(env, OARScheduler.task_environment(env)).key == "te:none|oar:42"
    assert OARScheduler.task_environment({}) is None
