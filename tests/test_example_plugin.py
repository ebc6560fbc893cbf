"""The example third-party package (examples/acme_logger), installed by CI with pip like any
user's package, is found through its entry point, selected by name, and passes LoggerSuite."""

from __future__ import annotations

import csv

import importlib_metadata
from mlxpy.testing import LoggerSuite, ProjectDir


def test_example_package_is_installed_with_its_entry_point():
    dist = importlib_metadata.distribution("acme-logger")  # fails if CI did not install it
    (entry,) = [ep for ep in dist.entry_points if ep.group == "mlxpy"]
    assert entry.value == "acme_logger"


class TestAcmeLoggerConformance(LoggerSuite):
    logger_name = "AcmeLogger"
    logger_settings = {"delimiter": ";"}


def test_selected_by_name_in_a_real_run(tmp_path):
    from mlxpy.testing import LOGGER_TASK

    project = ProjectDir(tmp_path / "p", LOGGER_TASK)
    project.write_config({"seed": 0, "steps": 3, "fail": False})
    result = project.run("+mlxpy.logger.name=AcmeLogger")
    assert result.returncode == 0, result.stderr
    assert "acme: run 1 ended COMPLETE" in result.stdout
    (run_dir,) = project.run_dirs()
    with open(run_dir / "metrics" / "train.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["step", "loss", "acc"] and len(rows) == 4
    assert project.info(run_dir)["plugins"]["acme-logger"] == "0.1.0"
