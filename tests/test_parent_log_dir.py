"""One rule for a relative ``parent_log_dir``, shared by the task, the Reader and the
``mlxpy`` commands: relative to the project dir, whatever the current directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlxpy
import pytest
from mlxpy.errors import MlxpyError
from mlxpy.rundir.location import resolve_parent_log_dir


def test_resolve_parent_log_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "proj"
    assert resolve_parent_log_dir("./logs", project) == project / "logs"
    assert resolve_parent_log_dir("../shared/logs", project) == project / ".." / "shared/logs"
    assert resolve_parent_log_dir("./logs") == tmp_path / "logs"  # no project: the cwd
    assert resolve_parent_log_dir("/abs/logs", project) == Path("/abs/logs")
    home = Path(os.path.expanduser("~"))
    assert resolve_parent_log_dir("~/logs", project) == home / "logs"


def test_one_rule_for_a_relative_log_dir_from_any_cwd(project, monkeypatch):
    """The conftest project runs ``python <root>/main.py`` from another, empty directory."""
    project.write_config("seed: 0\n")
    project.write_config("logger:\n  parent_log_dir: ./runs/here\n", "mlxpy.yaml")
    result = project.run()
    assert result.returncode == 0, result.stderr
    expected = (project.root / "runs" / "here").resolve()
    (run_dir,) = [p for p in expected.iterdir() if p.name.isdigit()]  # by the task's file
    info = project.info(run_dir)
    assert resolve_parent_log_dir("./runs/here", info["project_dir"]) == expected
    assert list(project.cwd.iterdir()) == []  # nothing in the cwd

    monkeypatch.chdir(project.cwd)  # the Reader, from the other cwd, given the project
    reader = mlxpy.Reader("./runs/here", project_dir=project.root)
    assert reader.parent_log_dir == expected
    assert reader.filter().index.tolist() == [1]
    with pytest.raises(MlxpyError, match=str(project.cwd / "runs" / "here")):
        mlxpy.Reader("./runs/here")  # no project given: relative to the cwd, and said so

    def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mlxpy.cli", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
        )

    where = ["--project-dir", str(project.root), "--format", "json"]
    listed = cli("runs", "./runs/here", *where, cwd=project.cwd)
    assert listed.returncode == 0, listed.stderr
    assert [row["log_id"] for row in json.loads(listed.stdout)] == [1]
    shown = cli("show", "1", "./runs/here", "--project-dir", str(project.root), cwd=project.cwd)
    assert shown.returncode == 0 and str(run_dir) in shown.stdout, shown.stderr

    monkeypatch.chdir(project.root)  # from the project dir, the default needs no flag
    assert mlxpy.Reader("./runs/here").parent_log_dir == expected
    here = cli("runs", "./runs/here", "--format", "json", cwd=project.root)
    assert [row["log_id"] for row in json.loads(here.stdout)] == [1]
