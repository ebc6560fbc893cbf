"""The SLURM job scripts of one-task and several-task jobs, and the task-layout options'
checks, without a cluster (the jobs themselves run in test_slurm_tasks_cluster.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlx_slurm.scheduler import SLURMScheduler, task_options
from mlxpy import ScheduledJob
from mlxpy.scheduling import job_script
from mlxpy.testing import ProjectDir

pytestmark = pytest.mark.slurm

COMMAND = [sys.executable, "main.py", "seed=1"]


def scripts(tmp_path: Path, scheduler: SLURMScheduler) -> tuple[str, str]:
    """A run's script and a 2-point pack's script."""
    jobs = []
    for number in (1, 2):
        job = ScheduledJob(number, tmp_path / str(number), ["seed=1"], f"main-{number}")
        job.extra.update(command=COMMAND, env={"MLXPY_LAUNCH_RECORD": "/r.json"})
        jobs.append(job)
    run = job_script.run_script(scheduler, jobs[0], COMMAND, tmp_path, jobs[0].extra["env"])
    pack = ScheduledJob(None, tmp_path, [], "pack")
    return run, job_script.pack_script(scheduler, pack, jobs, tmp_path, tmp_path / "done")


@pytest.mark.parametrize(
    "settings",
    [{}, {"ntasks": 1}, {"cpus_per_task": 4, "gpus_per_task": 1}, {"nodes": 1, "ntasks": 1}],
)
def test_a_one_task_job_runs_its_task_itself(tmp_path, settings):
    """No srun and no rendezvous: the script runs python itself, as it always did."""
    for text in scripts(tmp_path, SLURMScheduler(**settings)):
        assert "srun" not in text and "MASTER_" not in text
        assert text.count(" ".join(COMMAND)) == (1 if "runs, one after" not in text else 2)
    run, _ = scripts(tmp_path, SLURMScheduler(**settings))
    for key, value in settings.items():
        assert f"#SBATCH --{key.replace('_', '-')}={value}\n" in run


@pytest.mark.parametrize(
    "settings",
    [
        {"ntasks": 2},
        {"nodes": 2},
        {"ntasks_per_node": 2},
        {"option_cmd": ["--ntasks=2"]},
        {"option_cmd": ["-n 4"]},
        {"option_cmd": ["-N2", "--time=5"]},
    ],
)
def test_a_job_of_several_tasks_runs_them_with_srun_after_the_rendezvous(tmp_path, settings):
    run, pack = scripts(tmp_path, SLURMScheduler(**settings))
    for text in (run, pack):
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
        assert text.count("srun --kill-on-bad-exit=1 /bin/sh -c") == text.count("main.py")
        for line in ("export MASTER_ADDR", "export MASTER_PORT"):
            assert line in text and text.index(line) < text.index("srun")
        assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1' in text
        assert "$SLURM_JOB_ID" in text
    lines = run.splitlines()
    srun = next(i for i, line in enumerate(lines) if "srun" in line)
    assert lines[srun - 1] == "trap '' USR1" and lines[srun + 1] == "child=$!"


def test_srun_is_given_the_cpus_per_task(tmp_path):
    """srun does not take sbatch's --cpus-per-task from the job (SLURM 22.05 and later)."""
    run, _ = scripts(tmp_path, SLURMScheduler(ntasks=2, cpus_per_task=3))
    assert "#SBATCH --cpus-per-task=3\n" in run
    assert "srun --kill-on-bad-exit=1 --cpus-per-task=3 /bin/sh" in run
    run, _ = scripts(tmp_path, SLURMScheduler(option_cmd=["--ntasks=2", "-c 2"]))
    assert "srun --kill-on-bad-exit=1 --cpus-per-task=2 /bin/sh" in run


def test_raw_directives_are_read_in_every_spelling():
    assert task_options(["--ntasks=2", "--time=5"]) == {"--ntasks": "2"}
    assert task_options(["--nodes 3"]) == {"--nodes": "3"}
    assert task_options(["-n2", "-N 1", "-c4"]) == {"--ntasks": "2", "--nodes": "1"} | {
        "--cpus-per-task": "4"
    }
    assert task_options(["--ntasks-per-node=2 --gpus-per-task=1"]) == {
        "--ntasks-per-node": "2",
        "--gpus-per-task": "1",
    }
    assert task_options(["--hold", "--job-name=-n"]) == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ntasks": 0}, "ntasks must be a whole number of 1 or more, got 0"),
        ({"gpus_per_task": -1}, "gpus_per_task must be a whole number of 1 or more, got -1"),
        (
            {"ntasks": 2, "option_cmd": ["-n 3"]},
            "ntasks=2 and option_cmd's --ntasks=3 set the same sbatch option",
        ),
    ],
)
def test_bad_task_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        SLURMScheduler(**settings)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+mlxpy.scheduler.ntasks=0", "scheduler.ntasks=0"),
        ("+mlxpy.scheduler.cpus_per_task=two", "scheduler.cpus_per_task"),
        ("+mlxpy.scheduler.nodes=true", "scheduler.nodes"),
    ],
)
def test_a_bad_task_setting_stops_the_launch_with_status_2(tmp_path, override, message):
    """Refused before any run dir is claimed or sbatch is called (no cluster needed)."""
    project = ProjectDir(tmp_path / "p")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config(
        {"scheduler": {"name": "SLURMScheduler"}, "use_scheduler": True}, "mlxpy.yaml"
    )
    result = project.run(override)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert project.run_dirs() == []


def test_an_mlxpsub_script_asking_for_several_tasks_runs_them_with_srun(tmp_path):
    """``#SBATCH --ntasks=2`` reaches SLURMScheduler as option_cmd, which counts it."""
    from mlxpy.scheduling.script_import import parse_script

    text = "#!/bin/bash\n#SBATCH --ntasks=2\n#SBATCH --time=5\npython main.py seed=1,2\n"
    imported = parse_script(text, "job.sh")
    assert imported.scheduler == "SLURMScheduler"
    run, _ = scripts(tmp_path, SLURMScheduler(option_cmd=imported.option_cmd))
    assert "#SBATCH --ntasks=2\n" in run and "srun --kill-on-bad-exit=1" in run
    with pytest.raises(ValueError, match="set the same sbatch option"):
        SLURMScheduler(option_cmd=imported.option_cmd, ntasks=2)


# -- what a process in a SLURM job is (mlxpy.Scheduler.task_environment) ----------------------

SRUN_TASK1 = {  # measured: sbatch --ntasks=2, srun inside, task 1
    "SLURM_JOB_ID": "11253",
    "SLURM_STEP_ID": "0",
    "SLURM_STEPID": "0",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "2",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_CLUSTER_NAME": "mlxpytest",
}
BATCH_SHELL = {  # measured: the batch script of sbatch --ntasks=2, no srun
    "SLURM_JOB_ID": "11253",
    "SLURM_PROCID": "0",
    "SLURM_NTASKS": "2",
    "SLURM_CLUSTER_NAME": "mlxpytest",
}


def test_srun_tasks_are_ranks_of_their_job_step():
    from mlxpy.distributed import detect

    task = SLURMScheduler.task_environment(SRUN_TASK1)
    info = detect(SRUN_TASK1, task)
    assert (info.launcher, info.rank, info.world_size, info.local_rank) == ("slurm", 1, 2, 1)
    assert info.key == "slurm:mlxpytest:11253.0"
    requeued = {**SRUN_TASK1, "SLURM_RESTART_COUNT": "1"}
    again = detect(requeued, SLURMScheduler.task_environment(requeued))
    assert again.key == info.key and again.attempt != info.attempt


def test_the_batch_shell_is_one_process_though_ntasks_is_two():
    from mlxpy.distributed import detect

    task = SLURMScheduler.task_environment(BATCH_SHELL)
    assert task.job == "slurm:mlxpytest:11253" and task.rank is None
    assert not detect(BATCH_SHELL, task).distributed
    assert SLURMScheduler.task_environment({}) is None


def test_torchrun_inside_a_step_wins_over_the_step():
    """Measured: ``srun --ntasks=1 torchrun --nproc_per_node=2`` gives both workers
    SLURM_PROCID=0 of SLURM_NTASKS=1 and RANK of WORLD_SIZE=2."""
    from mlxpy.distributed import detect

    env = {**SRUN_TASK1, "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1"}
    env.update({"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none"})
    info = detect(env, SLURMScheduler.task_environment(env))
    assert (info.launcher, info.rank, info.world_size) == ("torchelastic", 1, 2)
    assert info.key == "te:none|slurm:mlxpytest:11253.0"


def test_a_garbled_slurm_variable_is_a_setup_error():
    import mlxpy

    with pytest.raises(mlxpy.DistributedSetupError, match="SLURM_PROCID='x'"):
        SLURMScheduler.task_environment({**SRUN_TASK1, "SLURM_PROCID": "x"})
