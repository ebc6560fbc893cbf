"""How a run ends when the end is rough: signals that repeat or arrive while the run records
its end, exceptions that cannot be printed, ``sys.exit(n)`` in one job of a sweep. Each test
runs a real ``python main.py`` and reads what the run left on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlxpy.metrics import read_metrics
from mlxpy.testing import ProjectDir

ROWS = 20_000

TASK = """
import sys, time
import mlxpy


class Unprintable(Exception):
    def __str__(self):
        raise TypeError("no str() for this one")


@mlxpy.launch(config_path="./configs")
def task(ctx):
    c = ctx.config
    for step in range(c.rows):
        ctx.logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    if c.x == c.exit_on:
        sys.exit(c.exit_code)
    if c.mode == "surrogate":
        raise ValueError("bad \\udcff")
    if c.mode == "unprintable":
        raise Unprintable()
    if c.mode == "fail":
        raise RuntimeError("plain failure")
    if c.mode == "sleep":
        with open(c.ready, "w") as handle:
            handle.write("ready")
        time.sleep(60)
    return c.mode


if __name__ == "__main__":
    task()
"""


@pytest.fixture
def project(tmp_path: Path) -> ProjectDir:
    project = ProjectDir(tmp_path / "proj", TASK)
    project.write_config(
        {
            "seed": 0,
            "mode": "ok",
            "rows": 0,
            "ready": str(tmp_path / "ready"),
            "x": 0,
            "exit_on": -1,
            "exit_code": 0,
        }
    )
    # Everything stays buffered until the run ends: only the end of the run can save it.
    project.write_config(
        {"logger": {"name": "DefaultLogger", "flush_every": 10**9, "flush_interval_s": 1000.0}},
        "mlxpy.yaml",
    )
    return project


def recorded(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's info as ``info.yaml`` and as ``run.json`` have it."""
    from mlxpy.run_dir import read_yaml

    info = read_yaml(run_dir / "metadata" / "info.yaml")
    run_json = json.loads((run_dir / "metadata" / "run.json").read_text())["info"]
    return info, run_json


def steps(run_dir: Path) -> list[int]:
    return [record["step"] for record in read_metrics(run_dir / "metrics" / "train.json")]


# -- exceptions that cannot be printed --------------------------------------------------------


@pytest.mark.parametrize(
    "mode, error_type, message",
    [
        ("surrogate", "ValueError", "bad \\udcff"),
        ("unprintable", "Unprintable", "<str() raised TypeError>"),
    ],
)
def test_unprintable_exception_is_recorded_and_reraised(project, mode, error_type, message):
    result = project.run(f"mode={mode}", "rows=300")
    assert result.returncode == 1, result.stderr
    last_line = result.stderr.rstrip().splitlines()[-1]
    assert last_line.split(":")[0].endswith(error_type), result.stderr  # the user's exception
    (run_dir,) = project.run_dirs()
    info, run_json = recorded(run_dir)
    assert info["status"] == run_json["status"] == "FAILED"
    assert info["error"] == run_json["error"] == {"type": error_type, "message": message}
    error_log = (run_dir / "metadata" / "error.log").read_text()
    assert "Traceback" in error_log and error_type in error_log
    assert steps(run_dir) == list(range(300))
    assert "Traceback" in result.stderr and "mlxpy" not in last_line
