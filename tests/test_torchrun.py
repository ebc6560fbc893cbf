"""Real ``torchrun --standalone --nproc_per_node=2`` jobs on CPU, with a real ``gloo``
all-reduce: one run per job, whatever its ranks do. CI installs torch (the CPU build); these
fail rather than skip without it. Each torchrun costs ~10 s here (torch imports in each
worker), so the task only imports torch where the test needs a collective."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from mlxpy.rundir.metrics import read_metrics

TASK = """
import os, sys
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    assert rank == ctx.info.rank and dist.get_world_size() == ctx.info.world_size
    print(f"rank {rank} port {os.environ['MASTER_PORT']}", flush=True)
    for step in range(ctx.config.steps):
        value = torch.tensor([float(rank + 1)])
        dist.all_reduce(value)  # 1 + 2 on every rank
        ctx.logger.log_metrics({"sum": value.item()}, step=step)
        ctx.logger.log_metrics({"mine": float(rank)}, log_name="ranks", step=step, all_ranks=True)
    if ctx.is_main:
        ctx.logger.log_checkpoint({"step": ctx.config.steps})
    dist.barrier()
    print(f"rank {rank} checkpoint {ctx.logger.load_checkpoint()}", flush=True)
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if rank == ctx.config.fail_rank and restarts < ctx.config.fail_attempts:
        raise RuntimeError(f"rank {rank} fails on attempt {restarts}")
    dist.barrier()
    dist.destroy_process_group()

if __name__ == "__main__":
    task()
"""


def _project(root: Path) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "config.yaml").write_text("steps: 3\nfail_rank: -1\nfail_attempts: 1\n")
    (root / "main.py").write_text(TASK)
    return root


def _torchrun(root: Path, *args: str, restarts: int = 0) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        f"--max-restarts={restarts}",
        "main.py",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _runs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "logs").iterdir() if p.name.isdigit())


def _info(run: Path) -> dict:
    return yaml.safe_load((run / "metadata" / "info.yaml").read_text())


def test_a_torchrun_job_is_one_run(tmp_path):
    root = _project(tmp_path / "p")
    job = _torchrun(root)
    out, err = job.communicate(timeout=180)
    assert job.returncode == 0, err
    (run,) = _runs(root)
    info = _info(run)
    assert info["status"] == "COMPLETE" and info["world_size"] == 2
    assert info["distributed"]["launcher"] == "torchelastic"
    records = read_metrics(run / "metrics" / "train.json")
    assert [(r["step"], r["sum"]) for r in records] == [(0, 3.0), (1, 3.0), (2, 3.0)]
    assert sorted(p.name for p in run.glob("log.rank*.stdout")) == [
        "log.rank0.stdout",
        "log.rank1.stdout",
    ]
    for rank in (0, 1):  # every rank loads the checkpoint rank 0 saved
        text = (run / f"log.rank{rank}.stdout").read_text()
        assert f"rank {rank} checkpoint {{'step': 3}}" in text
    assert [r["mine"] for r in read_metrics(run / "ranks/1/metrics/ranks.json")] == [1.0] * 3
    from mlxpy import Reader

    frame = Reader(root / "logs").filter().mlxpy.metrics("ranks")
    assert sorted(set(zip(frame["rank"], frame["mine"], strict=True))) == [(0, 0.0), (1, 1.0)]
    assert len(frame) == 6


def test_a_failing_rank_fails_the_run_and_is_torchruns_root_cause(tmp_path):
    root = _project(tmp_path / "p")
    job = _torchrun(root, "fail_rank=1")
    out, err = job.communicate(timeout=180)
    assert job.returncode != 0
    (run,) = _runs(root)
    info = _info(run)
    assert info["status"] == "FAILED" and info["failed_rank"] == 1
    assert info["error"]["message"] == "rank 1 fails on attempt 0"
    assert "rank 1 fails on attempt 0" in (run / "metadata" / "error.log").read_text()
    # torchrun's summary shows the real traceback (mlxpy wrote its error file)
    assert "Root Cause" in err and "rank 1 fails on attempt 0" in err.split("Root Cause")[1]
    status0 = json.loads((run / "ranks" / "0" / "status.json").read_text())
    assert status0["status"] in ("INTERRUPTED", "COMPLETE", "FAILED")  # torn down or not


RESTART_TASK = """
import os, time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    for step in range(3):
        ctx.logger.log_metrics({"attempt": attempt}, step=step)
    if attempt == 0:
        if ctx.info.rank == 1:
            raise RuntimeError("rank 1 fails on attempt 0")
        time.sleep(60)  # torchrun tears this rank down once rank 1 has failed

if __name__ == "__main__":
    task()
"""


def test_a_restarted_torchrun_job_resumes_its_run(tmp_path):
    """``--max-restarts=1``: rank 1 fails on attempt 0; attempt 1 (same run id) resumes the
    run attempt 0 started, which ends COMPLETE with attempt 0 in its history. (No gloo
    here: torch 2.13's gloo cannot reconnect on a restarted standalone job, with or without
    mlxpy, measured.)"""
    root = _project(tmp_path / "p")
    (root / "main.py").write_text(RESTART_TASK)
    job = _torchrun(root, restarts=1)
    out, err = job.communicate(timeout=240)
    assert job.returncode == 0, err
    (run,) = _runs(root)
    info = _info(run)
    assert info["status"] == "COMPLETE" and info["restarts"] == 1, info
    assert [a["status"] for a in info["history"]] == ["FAILED"]
    records = read_metrics(run / "metrics" / "train.json")
    assert [(r["step"], r["attempt"]) for r in records] == [
        (s, a) for a in (0, 1) for s in range(3)
    ]


def test_two_torchrun_jobs_at_once_get_two_runs_and_two_ports(tmp_path):
    root = _project(tmp_path / "p")
    jobs = [_torchrun(root), _torchrun(root)]
    results = [job.communicate(timeout=240) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [r[1][-2000:] for r in results]
    runs = _runs(root)
    assert len(runs) == 2
    ports = set()
    for run in runs:
        assert _info(run)["status"] == "COMPLETE"
        text = (run / "log.rank0.stdout").read_text()
        ports.add(text.split("port ")[1].split()[0])
        assert len(read_metrics(run / "metrics" / "train.json")) == 3
    assert len(ports) == 2
