"""Cluster limits of a sweep with the builtin LocalScheduler (real job scripts, real
processes): ``sweep.pack`` runs several points one after another in one job, each in its own
run dir; ``sweep.max_running`` bounds how many run at once; the cap on submitted jobs is
checked before any run dir is claimed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from mlxpy.scheduling.job_script import pack_script
from mlxpy.scheduling.local import LocalScheduler, _state_root
from mlxpy.testing import ProjectDir

# a point fails when its seed is 1 more than a multiple of 3: the first point of each pack
FLAKY_TASK = """
import time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    print("RUN", ctx.config.seed, flush=True)
    time.sleep(ctx.config.sleep)
    if ctx.config.seed % 3 == 1:
        raise RuntimeError("failing on purpose")

if __name__ == "__main__":
    task()
"""


def local_project(tmp_path: Path, **settings: object) -> ProjectDir:
    project = ProjectDir(tmp_path / "p", FLAKY_TASK)
    project.write_config({"seed": 0, "sleep": 0.0})
    project.write_config(
        {"scheduler": {"name": "LocalScheduler", **settings}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    return project


def local_state(job_id: str, timeout: float = 30) -> dict:
    """The local job's final state (its runs may end a moment before the job does)."""
    queue, _, task = job_id.rpartition("_")
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads((_state_root() / queue / f"{task}.json").read_text())
        if state["state"] not in ("PENDING", "RUNNING") or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def by_seed(project: ProjectDir, infos: list[dict]) -> dict[int, dict]:
    return {project.config(Path(i["log_dir"]))["seed"]: i for i in infos}


def test_pack_runs_its_points_in_turn_each_in_its_own_run_dir(tmp_path):
    """7 points, pack=3: 3 jobs (one array); a failing point does not stop the next ones,
    and a job's exit status says whether any of its points failed."""
    project = local_project(tmp_path, max_workers=2)
    result = project.run("seed=range(1,8)", "+mlxpy.sweep.pack=3")
    assert result.returncode == 0, result.stderr
    infos = by_seed(project, project.wait(7, 120))
    assert {s: i["status"] for s, i in infos.items()} == {
        s: "FAILED" if s % 3 == 1 else "COMPLETE" for s in range(1, 8)
    }
    jobs = [infos[s]["scheduler"]["job_id"] for s in range(1, 8)]
    assert len(set(jobs[0:3])) == len(set(jobs[3:6])) == 1 and len(set(jobs)) == 3
    for seed, info in infos.items():  # each point's output in its own run dir
        assert (Path(info["log_dir"]) / "job.stdout").read_text() == f"RUN {seed}\n"
        assert info["scheduler"]["pack_script"].endswith(".sh")
    for first in (1, 4):  # one after another
        spans = [(infos[s]["start_time"], infos[s]["end_time"]) for s in range(first, first + 3)]
        assert all(spans[n][1] <= spans[n + 1][0] for n in range(2)), spans
    for job_id in set(jobs):  # every pack holds a failing point: the job exits 1
        assert local_state(job_id) == {"state": "FAILED", "exit_code": 1}


def test_pack_of_single_jobs_without_arrays(tmp_path):
    """use_arrays: false: each pack is one job of its own; a pack with no failure exits 0."""
    project = local_project(tmp_path, max_workers=2, use_arrays=False)
    result = project.run("seed=2,3,5,6", "+mlxpy.sweep.pack=2")
    assert result.returncode == 0, result.stderr
    infos = by_seed(project, project.wait(4, 120))
    assert {i["status"] for i in infos.values()} == {"COMPLETE"}
    jobs = {s: i["scheduler"]["job_id"] for s, i in infos.items()}
    assert jobs[2] == jobs[3] != jobs[5] == jobs[6]
    assert "array_script" not in infos[2]["scheduler"]
    assert local_state(jobs[2]) == {"state": "COMPLETED", "exit_code": 0}


def test_a_requeued_pack_skips_the_points_that_ended(tmp_path):
    """The pack notes each point that ended; running the pack again (as a requeued or
    resubmitted job does) runs only the points not noted."""
    project = local_project(tmp_path, max_workers=1)
    assert project.run("seed=2,3", "+mlxpy.sweep.pack=2").returncode == 0
    infos = by_seed(project, project.wait(2, 120))
    script = Path(infos[2]["scheduler"]["pack_script"])
    assert local_state(infos[2]["scheduler"]["job_id"])["state"] == "COMPLETED"
    done = script.with_suffix(".done")
    assert done.read_text().split() == ["0", "1"]
    done.write_text("0\n")  # as if the job had been requeued during its second point
    rerun = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    stdout = {s: (Path(i["log_dir"]) / "job.stdout").read_text() for s, i in infos.items()}
    assert stdout == {2: "RUN 2\n", 3: "RUN 3\nRUN 3\n"}  # only the point not noted
    assert done.read_text().split() == ["0", "1"]


def test_max_running_bounds_an_array(tmp_path):
    """max_workers 3, sweep.max_running 1: the points of the array run one at a time."""
    project = local_project(tmp_path, max_workers=3)
    result = project.run("seed=2,3,5", "+mlxpy.sweep.max_running=1", "sleep=0.5")
    assert result.returncode == 0, result.stderr
    infos = sorted(project.wait(3, 120), key=lambda i: i["start_time"])
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    assert all(infos[n]["end_time"] <= infos[n + 1]["start_time"] for n in range(2))


def test_max_running_without_arrays_is_refused_before_anything_runs(tmp_path):
    project = local_project(tmp_path, use_arrays=False)
    result = project.run("seed=2,3", "+mlxpy.sweep.max_running=1")
    assert result.returncode == 2
    assert "LocalScheduler cannot limit the running jobs of a sweep without arrays" in (
        result.stderr
    )
    assert [project.info(d)["status"] for d in project.run_dirs()] == ["SUBMIT_FAILED"] * 2


def test_pack_script_is_valid_shell_and_names_each_point(tmp_path):
    """The text of a pack: every point's own launch record, its own output files."""
    from mlxpy.scheduling.base import ScheduledJob

    jobs = []
    for number in range(2):
        run = tmp_path / str(number)
        run.mkdir()
        jobs.append(
            ScheduledJob(
                number,
                run,
                [],
                f"p{number}",
                extra={
                    "command": ["python", "main.py", f"seed={number}"],
                    "env": {"R": f"r{number}"},
                },
            )
        )
    pack = ScheduledJob(None, tmp_path, [], "pack", extra={"stdout": str(tmp_path / "p.out")})
    text = pack_script(LocalScheduler(), pack, jobs, tmp_path, tmp_path / "p.done")
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    for number in range(2):
        assert f"export R=r{number};" in text and f"seed={number}" in text
        assert f">>{tmp_path / str(number) / 'job.stdout'}" in text
