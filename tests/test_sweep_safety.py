"""A sweep's record in a shared log dir is untrusted input: never reached through a symbolic
link, never read beyond a size sized to the data. Real ``python main.py`` launches and real
``mlxpy`` commands."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from mlxpy.sweeping.manifest import (
    JOURNAL_FILE,
    MANIFEST_FILE,
    MAX_JOURNAL_BYTES,
    MAX_MANIFEST_BYTES,
    list_sweeps,
)
from mlxpy.testing import ProjectDir

CONFIG = {"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0}


@pytest.fixture
def project(tmp_path):
    project = ProjectDir(tmp_path / "p")
    project.write_config(CONFIG)
    return project


def test_a_launch_refuses_to_record_its_sweep_through_a_symlinked_sweeps_dir(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project.logs.mkdir()
    (project.logs / ".sweeps").symlink_to(elsewhere)
    result = project.run("seed=1,2")
    assert result.returncode == 2, result.stderr
    assert "mlxpy: error: " in result.stderr and "symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []  # nothing written outside the log dir
    assert project.run_dirs() == []  # refused before any run


def test_mlxpy_sweeps_does_not_read_through_a_symlinked_sweeps_dir(project, tmp_path):
    assert project.run("seed=1,2").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(project.logs / ".sweeps", elsewhere)
    (project.logs / ".sweeps").symlink_to(elsewhere)
    for command in (("sweeps",), ("sweep", "status", sweep_id)):
        result = project.mlxpy(*command)
        assert result.returncode == 2, result.stdout
        assert "symbolic link" in result.stderr and sweep_id not in result.stdout


def test_a_symlinked_sweep_folder_is_refused_too(project, tmp_path):
    assert project.run("seed=1,2").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    folder = project.logs / ".sweeps" / sweep_id
    shutil.move(folder, tmp_path / "moved")
    folder.symlink_to(tmp_path / "moved")
    result = project.mlxpy("sweep", "status", sweep_id)
    assert result.returncode == 2 and "symbolic link" in result.stderr, result.stderr
    rows = json.loads(project.mlxpy("sweeps", "--format", "json").stdout)
    assert [row["sweep_id"] for row in rows] == [sweep_id] and "symbolic link" in rows[0]["error"]


@pytest.mark.parametrize(
    ("name", "limit"), [(JOURNAL_FILE, MAX_JOURNAL_BYTES), (MANIFEST_FILE, MAX_MANIFEST_BYTES)]
)
def test_an_oversized_record_is_an_unreadable_row_not_a_huge_read(project, name, limit):
    assert project.run("seed=1,2").returncode == 0
    assert project.run("seed=3,4").returncode == 0
    damaged, intact = list_sweeps(project.logs)
    path = project.logs / ".sweeps" / damaged / name
    os.truncate(path, limit + 1)  # sparse: no disk used, but too large to read
    result = project.mlxpy("sweeps", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["sweep_id"]: row for row in json.loads(result.stdout)}
    assert f"more than the {limit}" in rows[damaged]["error"]
    assert rows[intact]["counts"] == {"COMPLETE": 2}
    table = project.mlxpy("sweeps")
    assert f"{damaged}  (unreadable: " in table.stdout


COUNTING_SWEEPER = """
from mlxpy.sweeping.sweeper import Sweeper, Trial


class CountingSweeper(Sweeper):
    name = "CountingSweeper"
    adaptive = True
    objective = "train.loss.min"

    def open(self, sweep_dir, space):
        self.fixed, self.asked = list(space.fixed), 0

    def ask(self):
        if self.asked == 1:
            return None
        self.asked += 1
        return Trial(0, [*self.fixed, "seed=1"])

    def tell(self, trial, value, status):
        pass

    def running(self):
        return []

    def best(self):
        return None
"""


def test_an_adaptive_sweep_submits_no_workers_through_a_symlinked_folder(project, tmp_path):
    (project.root / "counting_sweeper.py").write_text(COUNTING_SWEEPER)
    name = "+mlxpy.sweep.name=counting_sweeper.CountingSweeper"
    assert project.run(name).returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project.logs / ".sweeps" / sweep_id / "workers").symlink_to(elsewhere)
    project.write_config(
        {"scheduler": {"name": "LocalScheduler"}, "use_scheduler": True}, "mlxpy.yaml"
    )
    result = project.run(name, "+mlxpy.sweep.resume=true")
    assert result.returncode == 2, result.stderr
    assert "symbolic link" in result.stderr and list(elsewhere.iterdir()) == []
