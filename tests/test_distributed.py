"""Distributed runs without torch: rank detection from each launcher's environment (the
variables measured under torchrun, srun and mpirun), and the ranks of one job as real
``python main.py`` processes started together with the environment torchrun gives them
(the real torchrun is in test_torchrun.py: it costs ~10 s a test)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from mlxpy.distributed import DistributedSetupError, SchedulerTask, detect
from mlxpy.distributed.outcome import RankStatus, merged
from mlxpy.rundir.metrics import read_metrics

# -- detection ------------------------------------------------------------------------------

TORCHRUN_RANK1 = {  # measured: torchrun --standalone --nproc_per_node=2, rank 1
    "GROUP_RANK": "0",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "RANK": "1",
    "WORLD_SIZE": "2",
    "MASTER_ADDR": "localhost",
    "MASTER_PORT": "42113",
    "TORCHELASTIC_RUN_ID": "05762487-81c2-4e19-9024-55968f95bd5f",
    "TORCHELASTIC_RESTART_COUNT": "0",
}
#: what a scheduler plugin reads in its job step's environment (mlx_slurm's tests check the
#: real variables): task 1 of 2 of job 11253, step 0
STEP_TASK1 = SchedulerTask("sched:c:11253.0", 0, "sched", rank=1, world_size=2, local_rank=1)
#: the job's batch shell: a job, no task
BATCH_SHELL = SchedulerTask("sched:c:11253")


def test_torchrun_ranks_and_key():
    info = detect(TORCHRUN_RANK1)
    assert (info.launcher, info.rank, info.world_size, info.local_rank) == ("torchelastic", 1, 2, 1)
    assert info.key == "te:05762487-81c2-4e19-9024-55968f95bd5f" and info.unique_key
    assert not info.is_main and info.distributed
    restarted = detect({**TORCHRUN_RANK1, "TORCHELASTIC_RESTART_COUNT": "1"})
    assert restarted.key == info.key and restarted.attempt != info.attempt


def test_torchrun_inside_a_scheduler_task_is_torchrun():
    """Measured with SLURM: ``srun --ntasks=1 torchrun --nproc_per_node=2`` gives both
    workers task rank 0 of 1 *and* RANK of WORLD_SIZE=2: torchrun's ranks win."""
    task = SchedulerTask("sched:c:1.2", 0, "sched", rank=0, world_size=1, local_rank=0)
    info = detect(TORCHRUN_RANK1, task)
    assert (info.launcher, info.rank, info.world_size) == ("torchelastic", 1, 2)


def test_a_fixed_rdzv_id_is_keyed_with_the_job_and_not_unique():
    env = {**TORCHRUN_RANK1, "TORCHELASTIC_RUN_ID": "none"}
    info = detect(env, STEP_TASK1)
    assert not info.unique_key
    # the rendezvous address tells apart jobs run one after another or side by side
    assert info.key == "te:none@localhost:42113|sched:c:11253.0"
    assert detect(env).key == "te:none@localhost:42113|addr:localhost"  # no scheduler


def test_a_schedulers_tasks_count_only_when_its_launcher_started_them():
    info = detect({}, STEP_TASK1)
    assert (info.launcher, info.rank, info.world_size, info.local_rank) == ("sched", 1, 2, 1)
    assert info.key == "sched:c:11253.0"
    assert not detect({}, BATCH_SHELL).distributed  # a job's shell: one process
    requeued = detect({}, SchedulerTask("sched:c:11253.0", 1, "sched", 1, 2, 1))
    assert requeued.key == info.key and requeued.attempt != info.attempt


def test_mpi_and_pmi():
    ompi = {
        "OMPI_COMM_WORLD_RANK": "3",
        "OMPI_COMM_WORLD_SIZE": "4",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "PMIX_NAMESPACE": "prterun-vm-1234@1",
        "MASTER_ADDR": "node1",
    }
    info = detect(ompi)
    assert (info.launcher, info.rank, info.world_size, info.local_rank) == ("openmpi", 3, 4, 1)
    assert info.key == "mpi:prterun-vm-1234@1" and info.unique_key  # MPI's own job id
    pmi = {"PMI_RANK": "1", "PMI_SIZE": "2"}
    in_step = detect(pmi, STEP_TASK1)
    assert in_step.launcher == "pmi" and in_step.key == "sched:c:11253.0"
    assert in_step.local_rank == 1
    with pytest.raises(DistributedSetupError, match="MLXPY_JOB_KEY"):
        detect(pmi)
    keyed = detect({**pmi, "MLXPY_JOB_KEY": "job-7"})
    assert keyed.key == "user:job-7" and keyed.rank == 1


def test_single_process_and_bad_environments():
    assert not detect({}).distributed
    assert not detect({"RANK": "0", "WORLD_SIZE": "1"}).distributed
    with pytest.raises(DistributedSetupError, match="RANK='x'"):
        detect({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(DistributedSetupError, match="rank 2 of 2"):
        detect({"RANK": "2", "WORLD_SIZE": "2"})


# -- the run's status: the worst rank outcome, whatever the order ranks end in ----------------


def _status(rank, status, end, error=None, reason=None):
    return RankStatus(rank, "s", status, "h", 1, end, error, reason)


def test_merge_is_the_same_in_every_order_ranks_end():
    """Rank 1 fails first; the launcher tears rank 0 and 2 down (INTERRUPTED, later). Each
    rank merges what is on disk when it ends; every order gives FAILED by rank 1."""
    ends = {
        0: _status(0, "INTERRUPTED", "t2", {"type": "RunInterrupted", "message": "SIGTERM"}),
        1: _status(1, "FAILED", "t1", {"type": "RuntimeError", "message": "boom"}),
        2: _status(2, "FAILED", "t3", {"type": "DistBackendError", "message": "peer gone"}),
    }
    for order in itertools.permutations(ends):
        info = {"status": "RUNNING"}
        done = []
        for rank in order:
            done.append(ends[rank])
            if rank == 0:  # rank 0 writes its own final info, then merges
                info = {**info, "status": ends[0].status, "interrupt_reason": "SIGTERM"}
            info = merged(info, done) or info
        assert info["status"] == "FAILED", order
        assert info["failed_rank"] == 1 and info["error"]["message"] == "boom", order
        assert "interrupt_reason" not in info, order


def test_merge_never_makes_a_run_better():
    info = {"status": "FAILED", "failed_rank": 0, "error": {"type": "E", "message": "m"}}
    assert merged(
        info, [_status(0, "FAILED", "t1", info["error"]), _status(1, "COMPLETE", "t2")]
    ) in (
        None,
        info,
    )
    running = {"status": "RUNNING"}
    assert merged(running, [_status(1, "COMPLETE", "t1")]) is None  # rank 0 decides
    assert merged({"status": "COMPLETE"}, [_status(1, "LOST", "t1")])["status"] == "LOST"


# -- ranks as real processes, with the environment torchrun gives them -----------------------

TASK = """
import os, sys, time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    rank = ctx.info.rank
    print(f"rank {rank} of {ctx.info.world_size} main={ctx.is_main} local={ctx.info.local_rank}")
    print(f"stderr of rank {rank}", file=sys.stderr)
    for step in range(3):
        ctx.logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        ctx.logger.log_metrics({"r": rank}, log_name="per_rank", step=step, all_ranks=True)
    if rank == 0:  # as DDP's first collective would: every rank has joined
        while not os.path.exists(os.path.join(ctx.info.log_dir, "ranks/1/status.json")):
            time.sleep(0.05)
        ctx.logger.log_checkpoint({"epoch": 7})
        ctx.logger.log_artifacts({"a": 1}, "stats", "json")
    else:
        assert ctx.logger.log_artifacts({"a": 2}, "stats", "json") is None
        while ctx.logger.load_checkpoint() is None:  # no collective here: wait for rank 0
            time.sleep(0.05)
    print(f"rank {rank} loaded {ctx.logger.load_checkpoint()}")
    if str(rank) == os.environ.get("FAIL_RANK"):
        raise RuntimeError(f"boom on rank {rank}")
    if str(rank) == os.environ.get("HOLD_RANK", "0"):
        time.sleep(float(os.environ.get("HOLD_S", "0")))
    assert "torch" not in sys.modules

if __name__ == "__main__":
    task()
"""


def _project(tmp_path: Path, task: str = TASK) -> Path:
    root = tmp_path / "proj"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "config.yaml").write_text("seed: 0\n")
    (root / "main.py").write_text(task)
    return root


def _start_ranks(root: Path, size: int = 2, ranks=None, env=None, args=(), run_id=None):
    run_id = run_id or str(uuid.uuid4())
    procs = {}
    for rank in range(size) if ranks is None else ranks:
        rank_env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(size),
            "TORCHELASTIC_RUN_ID": run_id,
            **(env or {}),
        }
        procs[rank] = subprocess.Popen(
            [sys.executable, "main.py", *args],
            cwd=root,
            env=rank_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return procs


def _finish(procs, timeout=60):
    return {rank: (p.wait(timeout), *p.communicate()) for rank, p in procs.items()}


def _runs(root: Path) -> list[Path]:
    logs = root / "logs"
    return sorted(p for p in logs.iterdir() if p.name.isdigit()) if logs.exists() else []


def _info(run: Path) -> dict:
    return yaml.safe_load((run / "metadata" / "info.yaml").read_text())


def test_two_ranks_make_one_run(tmp_path):
    root = _project(tmp_path)
    results = _finish(_start_ranks(root))
    for rank, (code, _, err) in results.items():
        assert code == 0, (rank, err)
    (run,) = _runs(root)
    info = _info(run)
    assert info["status"] == "COMPLETE" and info["world_size"] == 2
    assert info["distributed"]["launcher"] == "torchelastic"
    assert "rank" not in info and "local_rank" not in info  # per process: not the run's
    # one metrics stream, one record per step, from rank 0
    assert [r["step"] for r in read_metrics(run / "metrics" / "train.json")] == [0, 1, 2]
    assert not (run / "ranks" / "1" / "metrics" / "train.json").exists()
    # per-rank metrics asked for: each rank its own log
    assert [r["r"] for r in read_metrics(run / "metrics" / "per_rank.json")] == [0, 0, 0]
    assert [r["r"] for r in read_metrics(run / "ranks/1/metrics/per_rank.json")] == [1, 1, 1]
    # each rank's output in its own files
    for rank in (0, 1):
        assert f"rank {rank} of 2 main={rank == 0}" in (run / f"log.rank{rank}.stdout").read_text()
        assert f"stderr of rank {rank}" in (run / f"log.rank{rank}.stderr").read_text()
        assert f"rank {rank} loaded {{'epoch': 7}}" in results[rank][1]  # every rank loads it
    assert not (run / "log.stdout").exists()
    # artifacts are rank 0's; the run announces itself once
    assert json.loads((run / "artifacts/json/stats.json").read_text()) == {"a": 1}
    assert "[mlxpy] run 1 " in results[0][2] and "[mlxpy] run" not in results[1][2]


def test_a_failing_rank_fails_the_run_with_its_traceback(tmp_path):
    """Rank 1 raises while rank 0 works on; rank 0 then ends COMPLETE: the run is FAILED,
    its error and error.log are rank 1's."""
    root = _project(tmp_path)
    results = _finish(_start_ranks(root, env={"FAIL_RANK": "1", "HOLD_S": "1"}))
    assert results[0][0] == 0 and results[1][0] == 1
    (run,) = _runs(root)
    info = _info(run)
    assert info["status"] == "FAILED" and info["failed_rank"] == 1
    assert info["error"] == {"type": "RuntimeError", "message": "boom on rank 1", "rank": 1}
    assert "boom on rank 1" in (run / "metadata" / "error.log").read_text()
    assert "boom on rank 1" in (run / "ranks" / "1" / "error.log").read_text()
    # rank 0 reports the run's outcome, not its own
    assert "1 run: 1 FAILED" in results[0][2], results[0][2]


def test_a_rank_torn_down_after_another_failed_is_not_the_cause(tmp_path):
    """As torchrun does: rank 1 fails, then rank 0 gets SIGTERM. The run is FAILED by rank
    1, not INTERRUPTED."""
    root = _project(tmp_path)
    procs = _start_ranks(root, env={"FAIL_RANK": "1", "HOLD_S": "30"})
    assert procs[1].wait(60) == 1
    procs[0].send_signal(signal.SIGTERM)
    results = _finish(procs)
    assert results[0][0] == 128 + signal.SIGTERM
    (run,) = _runs(root)
    info = _info(run)
    assert info["status"] == "FAILED" and info["failed_rank"] == 1
    assert info["error"]["message"] == "boom on rank 1"
    assert "interrupt_reason" not in info
    status0 = yaml.safe_load((run / "ranks" / "0" / "status.json").read_text())
    assert status0["status"] == "INTERRUPTED" and status0["interrupt_reason"] == "SIGTERM"


def test_a_rank_killed_without_a_word_makes_the_run_lost(tmp_path):
    """Rank 1 dies by kill -9 (no status written, its lock dropped by the kernel); rank 0
    ends COMPLETE after it: the run is LOST, not COMPLETE."""
    root = _project(tmp_path)
    procs = _start_ranks(root, env={"HOLD_RANK": "1", "HOLD_S": "60"})
    rank1 = root / "logs" / "1" / "log.rank1.stdout"
    deadline = time.monotonic() + 60
    while "loaded" not in (rank1.read_text() if rank1.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert procs[0].poll() is None or procs[0].wait(60) == 0
    procs[1].kill()
    results = _finish(procs)
    assert results[0][0] == 0
    info = _info(root / "logs" / "1")
    assert info["status"] == "LOST", info


def test_rank_zero_never_appearing_is_a_clear_error(tmp_path):
    root = _project(tmp_path)
    started = time.monotonic()
    results = _finish(_start_ranks(root, ranks=[1], args=["+mlxpy.logger.join_timeout_s=1.5"]))
    code, out, err = results[1]
    assert code == 2, err
    assert "rank 1 of 2" in err and "waited 1.5 s for rank 0" in err
    assert "logger.parent_log_dir" in err and time.monotonic() - started < 30
    assert _runs(root) == []  # nothing claimed by a rank that is not 0


FIXED_ID = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29611"}  # torchrun --master_port


def test_a_stale_join_of_a_reused_key_is_not_joined(tmp_path):
    """A fixed ``--rdzv_id`` (not unique): rank 0 withdraws its record at its end, and a
    record left behind (a killed job's) names a dead run: a later job's rank 1 never joins it."""
    root = _project(tmp_path)
    results = _finish(_start_ranks(root, run_id="none", env=FIXED_ID))
    assert all(r[0] == 0 for r in results.values())
    assert list((root / "logs" / ".joins").iterdir()) == []  # withdrawn
    from mlxpy.distributed import detect, join

    dist = detect({**FIXED_ID, "RANK": "0", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none"})
    uid = _info(root / "logs" / "1")["uid"]
    join.publish((root / "logs").resolve(), dist, 1, uid, "old-session")  # as a killed job's
    args = ["+mlxpy.logger.join_timeout_s=1"]
    code, _, err = _finish(_start_ranks(root, ranks=[1], run_id="none", env=FIXED_ID, args=args))[1]
    assert code == 2 and "waited 1 s" in err
    assert len(_runs(root)) == 1


def test_jobs_with_a_fixed_rdzv_id_one_after_another_get_their_own_runs(tmp_path):
    """``for lr in ...; do torchrun --master_port=29611 main.py lr=$lr; done``: the second
    job's rank 1, started before its rank 0, waits for it instead of joining the first job's
    run; and the second job is not taken for a restart of the first."""
    root = _project(tmp_path)
    first = _finish(_start_ranks(root, run_id="none", env={**FIXED_ID, "FAIL_RANK": "1"}))
    assert first[1][0] == 1
    late_zero = _start_ranks(root, ranks=[1], run_id="none", env=FIXED_ID)
    time.sleep(1.5)
    late_zero.update(_start_ranks(root, ranks=[0], run_id="none", env=FIXED_ID))
    second = _finish(late_zero)
    assert all(r[0] == 0 for r in second.values()), second
    runs = _runs(root)
    assert len(runs) == 2
    assert _info(runs[0])["status"] == "FAILED" and _info(runs[1])["status"] == "COMPLETE"
    assert "restarts" not in _info(runs[1])
    status1 = json.loads((runs[1] / "ranks" / "1" / "status.json").read_text())
    assert status1["status"] == "COMPLETE"
    assert [r["r"] for r in read_metrics(runs[0] / "ranks/1/metrics/per_rank.json")] == [1] * 3


def test_jobs_with_a_fixed_rdzv_id_at_once_on_two_ports_get_their_own_runs(tmp_path):
    root = _project(tmp_path)
    a = _start_ranks(root, run_id="none", env=FIXED_ID)
    b = _start_ranks(root, run_id="none", env={**FIXED_ID, "MASTER_PORT": "29612"})
    results = [_finish(a), _finish(b)]
    assert all(r[0] == 0 for job in results for r in job.values()), results
    runs = _runs(root)
    assert len(runs) == 2
    for run in runs:
        assert _info(run)["status"] == "COMPLETE"
        status1 = json.loads((run / "ranks" / "1" / "status.json").read_text())
        assert status1["status"] == "COMPLETE"


def test_a_restarted_job_resumes_its_run(tmp_path):
    """torchrun's ``--max-restarts``: attempt 1 has the same run id and a new restart count;
    its rank 0 resumes the run attempt 0 started (one run, its history kept)."""
    root = _project(tmp_path)
    run_id = str(uuid.uuid4())
    first = _finish(_start_ranks(root, run_id=run_id, env={"FAIL_RANK": "1"}))
    assert first[1][0] == 1
    again = {"TORCHELASTIC_RESTART_COUNT": "1"}
    second = _finish(_start_ranks(root, run_id=run_id, env=again))
    assert all(r[0] == 0 for r in second.values()), second
    (run,) = _runs(root)
    info = _info(run)
    assert info["status"] == "COMPLETE" and info["restarts"] == 1
    assert [a["status"] for a in info["history"]] == ["FAILED"]
    assert "failed_rank" not in info or info.get("failed_rank") is None


def test_a_sweep_run_by_every_rank_gives_one_run_per_point(tmp_path):
    root = _project(tmp_path)
    results = _finish(_start_ranks(root, args=["seed=1,2"]))
    assert all(r[0] == 0 for r in results.values()), results
    runs = _runs(root)
    assert len(runs) == 2
    assert [yaml.safe_load((r / "metadata/config.yaml").read_text())["seed"] for r in runs] == [
        1,
        2,
    ]
    for run in runs:
        assert (run / "ranks" / "1" / "status.json").is_file()
    assert len(list((root / "logs" / ".sweeps").iterdir())) == 1  # the sweep is rank 0's
    assert {_info(run)["sweep_id"] for run in runs} == {
        p.name for p in (root / "logs" / ".sweeps").iterdir()
    }


def test_a_bad_launcher_environment_is_a_setup_error(tmp_path):
    root = _project(tmp_path)
    env = {**os.environ, "RANK": "one", "WORLD_SIZE": "2"}
    result = subprocess.run(
        [sys.executable, "main.py"], cwd=root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "RANK='one'" in result.stderr and "not a whole number" in result.stderr
    assert _runs(root) == []


# -- the join record is untrusted input ------------------------------------------------------


def test_join_records_that_are_not_ours_are_never_followed(tmp_path):
    """A planted join file (a link, a huge file, one naming a path or a run of another key)
    is taken for no record at all: a rank keeps waiting, and never leaves the parent dir."""
    from mlxpy.distributed import join

    parent = tmp_path / "logs"
    (parent / ".joins").mkdir(parents=True)
    key = "te:k"
    path = join.join_file(parent, key)
    outside = tmp_path / "elsewhere.json"
    good = {
        "key": key,
        "attempt": "0.0",
        "log_id": 1,
        "uid": "u",
        "session": "s",
        "host": "h",
        "pid": 1,
        "written": time.time(),
    }
    outside.write_text(json.dumps(good))
    path.symlink_to(outside)
    assert join.read(parent, key) is None  # a link
    path.unlink()
    path.write_text(json.dumps(good) + " " * join.MAX_JOIN_BYTES)
    assert join.read(parent, key) is None  # too large
    for bad in ({"log_id": "../../etc"}, {"log_id": -1}, {"key": "te:other"}, {"pid": "x"}):
        path.write_text(json.dumps({**good, **bad}))
        assert join.read(parent, key) is None, bad
    path.write_text("not json")
    assert join.read(parent, key) is None
    path.write_text(json.dumps(good))
    record = join.read(parent, key)
    assert record is not None and join.run_dir(parent, record) == parent / "1"


def test_a_planted_ranks_link_is_refused(tmp_path):
    """A ``ranks`` link in the run dir (to make rank 1 write elsewhere) fails that rank's
    start with a clear error; nothing is written outside the run."""
    root = _project(tmp_path)
    task = TASK.replace(
        "    rank = ctx.info.rank\n", "    rank = ctx.info.rank\n    time.sleep(0)\n"
    )
    (root / "main.py").write_text(task)
    run_id = str(uuid.uuid4())
    procs = _start_ranks(root, ranks=[0], run_id=run_id)  # waits for rank 1 (as DDP would)
    run = root / "logs" / "1"
    deadline = time.monotonic() + 60
    while not (run / "ranks" / "0" / "status.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "ranks").rename(tmp_path / "moved")
    (run / "ranks").symlink_to(outside)
    code, _, err = _finish(_start_ranks(root, ranks=[1], run_id=run_id))[1]
    assert code == 2 and "symbolic link" in err, err
    assert list(outside.iterdir()) == []
    procs[0].kill()


def test_a_logger_that_cannot_share_a_run_refuses_clearly(tmp_path):
    """A Logger subclass without join_run: rank 0 runs as usual, rank 1 stops with an error
    that names the logger and what to do (exit status 2)."""
    root = _project(tmp_path, task=TASK.replace("    if rank == 0:  # as DDP", "    if False:  #"))
    (root / "printlog.py").write_text(
        "import mlxpy\n\n"
        "class PrintLogger(mlxpy.Logger):\n"
        "    name = 'PrintLogger'\n"
        "    def start_run(self, ctx):\n"
        "        self.log_id = 0\n"
        "    def save_info(self, info):\n"
        "        pass\n"
        "    def log_metrics(self, metrics, log_name='train', step=None, all_ranks=False):\n"
        "        print('metrics', metrics)\n"
        "    def log_checkpoint(self, checkpoint, log_name='last_ckpt'):\n"
        "        return None\n"
        "    def log_artifacts(self, artifact, artifact_name, artifact_type):\n"
        "        return None\n"
        "    def load_checkpoint(self):\n"
        "        return {'epoch': 7}\n"
    )
    from mlxpy.launching.options import DEFAULT_OPTIONS_YAML

    options = yaml.safe_load(DEFAULT_OPTIONS_YAML)
    options["logger"] = {"name": "printlog.PrintLogger"}
    (root / "configs" / "mlxpy.yaml").write_text(yaml.safe_dump(options))
    results = _finish(_start_ranks(root))
    assert results[0][0] == 0, results[0][2]
    code, _, err = results[1]
    assert code == 2 and "logger 'PrintLogger' cannot share one run" in err
    assert "join_run" in err
