"""The README quick start, run as a user would, as real subprocesses."""

from __future__ import annotations

import yaml
from mlxpy.launching.options import DEFAULT_OPTIONS_YAML

EXPECTED_DEFAULTS = {
    "logger": {
        "name": "DefaultLogger",
        "parent_log_dir": "./logs",
        "forced_log_id": -1,
        "log_streams_to_file": False,
    },
    "scheduler": {
        "name": "Scheduler",
        "shell_path": "",
        "shell_config_cmd": "",
        "env_cmd": "",
        "cleanup_cmd": "",
        "option_cmd": [],
    },
    "version_manager": {
        "name": "GitVM",
        "parent_target_work_dir": "./.workdir",
        "skip_requirements": False,
        "interactive_mode": True,
    },
    "use_version_manager": False,
    "use_scheduler": False,
    "use_logger": True,
}


def test_fresh_project_creates_configs_and_prints(project):
    result = project.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "seed: null\nThe logger object is an instance of:\n<class 'mlxpy.logger.DefaultLogger'>\n"
    )
    assert (project.configs / "config.yaml").read_text() == "seed: null\n"
    options = yaml.safe_load((project.configs / "mlxpy.yaml").read_text())
    assert options == EXPECTED_DEFAULTS
    assert list(options) == list(EXPECTED_DEFAULTS)  # same order as the docs
    assert yaml.safe_load(DEFAULT_OPTIONS_YAML) == EXPECTED_DEFAULTS
    # nothing is written to the cwd (no outputs/, multirun/, .hydra/, logs)
    assert list(project.cwd.iterdir()) == []
    assert sorted(p.name for p in project.root.iterdir()) == ["configs", "logs", "main.py"]


def test_existing_files_are_not_touched(seeded):
    (seeded.configs / "mlxpy.yaml").write_text("use_logger: false\n")
    result = seeded.run()
    assert result.returncode == 0, result.stderr
    assert (seeded.configs / "config.yaml").read_text().endswith("lr: 1e-3\n")
    assert (seeded.configs / "mlxpy.yaml").read_text() == "use_logger: false\n"
    assert "<class 'NoneType'>" in result.stdout


def test_seed_config_printed_as_yaml(seeded):
    result = seeded.run()
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split("The logger object")[0]
    assert yaml.safe_load(printed) == {
        "seed": None,
        "model": {"num_layers": 4},
        "optimizer": {"lr": 0.001},
    }
    assert printed.startswith("seed: null\nmodel:\n  num_layers: 4\noptimizer:\n")


def test_plus_overrides_existing_keys(seeded):
    result = seeded.run("+optimizer.lr=10.", "+model.num_layers=6")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout.split("The logger object")[0])
    assert printed == {"seed": None, "model": {"num_layers": 6}, "optimizer": {"lr": 10.0}}
    assert "<class 'mlxpy.logger.DefaultLogger'>" in result.stdout
    (run_dir,) = seeded.run_dirs()
    assert seeded.config(run_dir)["optimizer"]["lr"] == 10.0


def test_disable_logger(seeded):
    result = seeded.run("+mlxpy.use_logger=false")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("<class 'NoneType'>\n")
    assert "mlxpy" not in result.stdout.split("The logger object")[0]
    assert seeded.run_dirs() == []


def test_sweep_runs_every_combination(seeded):
    result = seeded.run("optimizer.lr=1e-3,1e-2", "seed=1,2")
    assert result.returncode == 0, result.stderr
    runs = seeded.run_dirs()
    assert [r.name for r in runs] == ["1", "2", "3", "4"]
    combos = {(seeded.config(r)["optimizer"]["lr"], seeded.config(r)["seed"]) for r in runs}
    assert combos == {(0.001, 1), (0.001, 2), (0.01, 1), (0.01, 2)}
    for run in runs:
        info = seeded.info(run)
        assert info["status"] == "COMPLETE"
        assert f"seed={seeded.config(run)['seed']}" in info["overrides"]
    summary = [line for line in result.stderr.splitlines() if line.startswith("[mlxpy] job")]
    assert len(summary) == 4 and all("COMPLETE" in line for line in summary)
    assert result.stdout.count("<class 'mlxpy.logger.DefaultLogger'>") == 4
