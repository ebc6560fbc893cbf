"""The Reader reads the per-rank metric logs of a distributed run (a ``rank`` column), from
real launches: ``python main.py`` started as the two ranks of one job, with the variables
torchrun gives its processes (``ProjectDir.run_ranks``; a real torchrun test is elsewhere)."""

from __future__ import annotations

import shutil
import warnings

import mlxpy
import pytest
from mlxpy.rundir.layout import RunDir
from mlxpy.testing import ProjectDir

TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    rank = ctx.info.rank
    for step in range(ctx.config.steps):
        ctx.logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        ctx.logger.log_metrics({"x": 10 * rank + step}, log_name="per", step=step, all_ranks=True)

if __name__ == "__main__":
    task()
"""
STEPS = 4


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> ProjectDir:
    """Run 1: a job of 2 ranks; run 2: one process (no launcher)."""
    project = ProjectDir(tmp_path_factory.mktemp("ranks") / "p", TASK)
    project.write_config({"seed": 0, "steps": STEPS})
    for result in project.run_ranks(2):
        assert result.returncode == 0, result.stderr
    single = project.run()
    assert single.returncode == 0, single.stderr
    return project


def _runs(project: ProjectDir, query: str = ""):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing of these runs is skipped
        return mlxpy.Reader(project.logs).filter(query)


def test_each_rank_keeps_its_own_log_only_when_asked(project):
    distributed, single = project.run_dirs()
    run = RunDir(distributed)
    assert project.info(distributed)["world_size"] == 2
    assert "world_size" not in project.info(single)
    assert run.rank(1).metrics_file("per").is_file()
    assert not run.rank(1).metrics_file("train").exists()  # rank 0 alone logs by default
    assert not run.rank(0).metrics.exists()  # rank 0's logs are the run's own
    assert len(run.metrics_file("train").read_text().splitlines()) == STEPS


def test_per_rank_logs_give_every_rank_with_a_rank_column(project):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        long = _runs(project, "info.world_size == 2").mlxpy.metrics("per")
    assert list(long.columns[:2]) == ["log_id", "rank"]
    assert str(long["rank"].dtype) == "int64"
    assert sorted(zip(long["rank"], long["step"], long["x"], strict=True)) == [
        (rank, step, 10 * rank + step) for rank in (0, 1) for step in range(STEPS)
    ]
    assert long.groupby("rank").size().to_dict() == {0: STEPS, 1: STEPS}  # one row per step


def test_runs_of_one_process_are_rank_zero_beside_a_distributed_one(project):
    long = _runs(project).mlxpy.metrics("per")
    counts = long.groupby(["log_id", "rank"]).size().to_dict()
    assert counts == {(1, 0): STEPS, (1, 1): STEPS, (2, 0): STEPS}


def test_default_logging_and_single_runs_give_todays_frame(project):
    runs = _runs(project)
    train = runs.mlxpy.metrics("train")  # no rank kept its own: no rank column
    assert list(train.columns) == ["log_id", "step", "loss", "_time"]  # the time: last
    assert train.groupby("log_id").size().to_dict() == {1: STEPS, 2: STEPS}
    alone = _runs(project, "log_id == 2").mlxpy.metrics("per")
    assert list(alone.columns) == ["log_id", "step", "x", "_time"]
    main_only = runs.mlxpy.metrics("per", all_ranks=False)
    assert list(main_only.columns) == ["log_id", "step", "x", "_time"]
    assert main_only.groupby("log_id").size().to_dict() == {1: STEPS, 2: STEPS}


def test_aggregate_counts_each_run_once_per_step(project):
    agg = _runs(project).mlxpy.aggregate("per")
    assert agg[("x", "count")].tolist() == [2] * STEPS  # two runs, rank 0's log of each
    assert "rank" not in agg.columns.get_level_values(0)


def test_a_metric_named_rank_gives_way_to_the_logging_rank(project, tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(project.logs, logs, ignore=shutil.ignore_patterns(".mlxpy-index*"))
    per = RunDir(logs / "1").rank(1).metrics_file("per")
    per.write_text(per.read_text().replace('"x"', '"rank":7,"x"'))
    runs = mlxpy.Reader(logs).filter("log_id == 1")
    with pytest.warns(mlxpy.MlxpyWarning, match="metric named 'rank'"):
        long = runs.mlxpy.metrics("per")
    assert sorted(set(long["rank"])) == [0, 1]
