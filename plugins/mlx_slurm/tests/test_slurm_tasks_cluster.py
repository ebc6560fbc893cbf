"""Jobs of several tasks on the real single-node SLURM cluster (scripts/clusters/slurm.sh):
``+mlxpy.scheduler.ntasks=2`` starts the task with srun, one process per rank, with
``MASTER_ADDR``/``MASTER_PORT`` exported, and SLURM's warning reaches every rank.

Each rank writes what it was given into a file (``<job id>.<rank>`` in RANKS) before it
calls the task; every rank calls it, and the job is one run: rank 0 starts the run dir the
submission claimed, rank 1 joins it.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
from mlxpy.testing import ProjectDir

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

TASK = """
import json, os, signal, sys, time
from pathlib import Path
import mlxpy

RANKS = Path({ranks!r})
RANK = os.environ.get("SLURM_PROCID")  # None: the submitting process
NOTE = RANKS / f"{{os.environ.get('SLURM_JOB_ID')}}.{{RANK}}"
KEYS = ("SLURM_PROCID", "SLURM_STEP_ID", "SLURM_NTASKS", "MASTER_ADDR", "MASTER_PORT")
if RANK is not None:
    NOTE.write_text(json.dumps({{k: os.environ.get(k) for k in KEYS}}) + "\\n")


@mlxpy.launch(config_path="./configs")
def task(ctx):
    print("RUN rank", ctx.info.rank, "of", ctx.info.world_size, "seed", ctx.config.seed, flush=True)
    first = os.environ.get("SLURM_RESTART_COUNT", "0") == "0"
    if ctx.config.mode == "wait" and first:  # until the warning interrupts the task (TIMEOUT)
        with NOTE.open("a") as note:
            note.write("ready\\n")
        time.sleep(60)


if __name__ == "__main__":
    task()
"""


def tasks_project(tmp_path: Path) -> tuple[ProjectDir, Path]:
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    project = ProjectDir(tmp_path / "p", TASK.format(ranks=str(ranks)))
    project.write_config({"seed": 0, "mode": "ok"})
    project.write_config(
        {"scheduler": {"name": "SLURMScheduler", "ntasks": 2}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    return project, ranks


def rank_notes(ranks: Path, job_id: str, count: int = 2, timeout: float = 120) -> list[dict]:
    """Each rank's environment (its note's first line), by rank."""
    deadline = time.monotonic() + timeout
    while len(list(ranks.glob(f"{job_id}.*"))) < count:
        assert time.monotonic() < deadline, sorted(p.name for p in ranks.iterdir())
        time.sleep(0.2)
    notes = [json.loads(p.read_text().splitlines()[0]) for p in ranks.glob(f"{job_id}.*")]
    return sorted(notes, key=lambda n: n["SLURM_PROCID"])


def job_ids(project: ProjectDir) -> list[str]:
    return [project.info(d)["scheduler"]["job_id"] for d in project.run_dirs()]


def slurm_job_id(job_id: str) -> str:
    """The SLURM_JOB_ID a job (or an array task, ``<array>_<task>``) runs with."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    return re.search(r"\bJobId=(\d+)", out).group(1)


def first_port(job_id: str) -> int:
    return 17000 + int(job_id) % 15000


def test_two_tasks_get_their_ranks_and_one_rendezvous_per_job(tmp_path):
    """A 2-point sweep of ntasks=2 jobs (one array, its tasks queued at once): each job's two
    ranks come from srun (step 0, ranks 0 and 1) and share MASTER_ADDR (the allocation's first
    node) and a MASTER_PORT derived from their job id; the two jobs' ports differ."""
    project, ranks = tasks_project(tmp_path)
    result = project.run("seed=1,2")
    assert result.returncode == 0, result.stderr
    infos = project.wait(2, 120)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 2  # one run per point
    ports = []
    for run_dir, job_id in zip(project.run_dirs(), job_ids(project), strict=True):
        jid = slurm_job_id(job_id)
        notes = rank_notes(ranks, jid)
        assert [n["SLURM_PROCID"] for n in notes] == ["0", "1"]
        assert {n["SLURM_STEP_ID"] for n in notes} == {"0"}  # ranks of one srun step
        assert {n["SLURM_NTASKS"] for n in notes} == {"2"}
        assert {n["MASTER_ADDR"] for n in notes} == {"node1"}
        (port,) = {n["MASTER_PORT"] for n in notes}
        assert int(port) - first_port(jid) in range(50), (port, jid)  # +k when in use
        ports.append(port)
        script = (run_dir / "script.sh").read_text()
        assert "#SBATCH --ntasks=2" in script and "srun --kill-on-bad-exit=1" in script
        out = (run_dir / "job.stdout").read_text()  # srun's tasks share the job's output
        assert out.count("RUN rank 0 of 2") == 1 and out.count("RUN rank 1 of 2") == 1
        info = project.info(run_dir)
        assert info["world_size"] == 2 and info["distributed"]["launcher"] == "slurm"
        assert info["distributed"]["key"].startswith(f"slurm:mlxpytest:{jid}.0")
        for rank in (0, 1):
            assert f"RUN rank {rank} of 2" in (run_dir / f"log.rank{rank}.stdout").read_text()
        rank1 = json.loads((run_dir / "ranks" / "1" / "status.json").read_text())
        assert rank1["status"] == "COMPLETE"
    assert len(set(ports)) == 2


def test_a_port_in_use_on_the_node_is_skipped(tmp_path):
    """The job's first port is taken on the node (another job's rendezvous): the script
    probes and exports the next free one."""
    project, ranks = tasks_project(tmp_path)
    probe = (
        subprocess.run(
            ["sbatch", "--parsable", "--hold", f"--output={tmp_path}/probe.out", "--wrap", "true"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split(";")[0]
    )
    subprocess.run(["scancel", probe], check=True)
    expected = str(int(probe) + 1)  # nobody else submits: the cluster lock is held
    with socket.socket() as busy:
        busy.bind(("", first_port(expected)))
        busy.listen()
        result = project.run("seed=1")
        assert result.returncode == 0, result.stderr
        (job_id,) = job_ids(project)
        assert job_id == expected, "another job was submitted in between: rerun under the lock"
        notes = rank_notes(ranks, job_id)
        project.wait(1, 120)
    assert {n["MASTER_PORT"] for n in notes} == {str(first_port(job_id) + 1)}


def warn_when_ready(ranks: Path, job_id: str) -> None:
    """Once both ranks' tasks are waiting, send SLURM's warning to the job's batch shell
    (``scancel --signal --batch``, as ``--signal=B:USR1@...`` does)."""
    deadline = time.monotonic() + 120
    while not all(
        (ranks / f"{job_id}.{k}").exists() and "ready" in (ranks / f"{job_id}.{k}").read_text()
        for k in (0, 1)
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)


def test_the_warning_signal_reaches_every_rank_through_srun(tmp_path):
    """SLURM's warning (SIGUSR1 to the batch shell, sent here with ``scancel --signal
    --batch``, as ``--signal=B:USR1@...`` sends it) is passed by the script to srun, and by
    srun to both ranks: rank 0's run records TIMEOUT, rank 1 notes the signal."""
    project, ranks = tasks_project(tmp_path)
    result = project.run("mode=wait")
    assert result.returncode == 0, result.stderr
    (job_id,) = job_ids(project)
    try:
        warn_when_ready(ranks, job_id)
        (info,) = project.wait(1, 120)
    finally:
        subprocess.run(["scancel", job_id], check=False)
    assert info["status"] == "TIMEOUT", info  # the run's: both ranks were warned
    (run_dir,) = project.run_dirs()
    rank1 = json.loads((run_dir / "ranks" / "1" / "status.json").read_text())
    assert rank1["status"] == "TIMEOUT" and rank1["interrupt_reason"] == "SIGUSR1"


def test_a_requeued_job_resumes_its_run_on_every_rank(tmp_path):
    """The warning with ``requeue: true``: the job (both ranks) records TIMEOUT, requeues
    itself; the requeued job's ranks start the same run dir again (rank 0 resumes it, rank 1
    joins the new attempt) and it ends COMPLETE with the first attempt in its history."""
    project, ranks = tasks_project(tmp_path)
    project.write_config(
        {
            "scheduler": {"name": "SLURMScheduler", "ntasks": 2, "requeue": True},
            "use_scheduler": True,
        },
        "mlxpy.yaml",
    )
    result = project.run("mode=wait")
    assert result.returncode == 0, result.stderr
    (job_id,) = job_ids(project)
    try:
        warn_when_ready(ranks, job_id)
        (info,) = project.wait(1, 400, done={"COMPLETE", "FAILED", "LOST"})
    finally:
        subprocess.run(["scancel", job_id], check=False)
    assert info["status"] == "COMPLETE", info
    assert info["restarts"] == 1 and [a["status"] for a in info["history"]] == ["TIMEOUT"]
    (run_dir,) = project.run_dirs()
    rank1 = json.loads((run_dir / "ranks" / "1" / "status.json").read_text())
    assert rank1["status"] == "COMPLETE"
    out = (run_dir / "log.rank1.stdout").read_text()
    assert out.count("RUN rank 1 of 2") == 2  # both attempts of rank 1 wrote here
