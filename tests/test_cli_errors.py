"""Every ``mlxpy`` command reports a setup error (an :class:`mlxpy.MlxpyError`) the same way:
one ``mlxpy: error:`` line on stderr, nothing on stdout, exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """A project with one completed run of the quick start, launched for real."""
    from conftest import QUICKSTART_MAIN, SEED_CONFIG, Project

    root = tmp_path_factory.mktemp("cli")
    project = Project(root, root)
    project.write_main(QUICKSTART_MAIN)
    project.write_config(SEED_CONFIG)
    result = project.run()
    assert result.returncode == 0, result.stderr
    return project


@pytest.mark.parametrize(
    "args, message",
    [
        (["runs", "-q", "config.seed =="], "bad query: expected a key"),
        (["runs", "-c", "nomatch*"], "no column matches 'nomatch*'"),
        (["runs", "nowhere"], "no log directory at "),
        (["status", "-q", "("], "bad query: "),
        (["status", "nowhere"], "no log directory at "),
        (["cancel", "99"], "no submitted run with id 99 in "),
        (["plot", "-m", "train.loss", "-q", "("], "bad query: "),
        (["plot", "-m", "nosuch.metric"], "no records of 'nosuch.metric'"),
    ],
)
def test_a_setup_error_is_one_line_and_exit_status_2(one_run, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", *args],
        capture_output=True,
        text=True,
        cwd=one_run.root,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"mlxpy: error: {message}")
    assert result.stderr.count("mlxpy: error:") == 1
    assert "Traceback" not in result.stderr
