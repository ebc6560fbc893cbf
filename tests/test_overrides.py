"""Hydra's override grammar, extended so that ``+key=value`` also sets an existing key."""

from __future__ import annotations

import yaml


def cfg_job(project, *args):
    result = project.run("--cfg", "job", *args)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_change_add_force_delete(seeded):
    assert cfg_job(seeded, "optimizer.lr=0.5")["optimizer"] == {"lr": 0.5}
    assert cfg_job(seeded, "+optimizer.momentum=0.9")["optimizer"] == {"lr": 0.001, "momentum": 0.9}
    assert cfg_job(seeded, "+seed=5")["seed"] == 5
    assert cfg_job(seeded, "++seed=6", "++new.key=x")["new"] == {"key": "x"}
    assert "seed" not in cfg_job(seeded, "~seed")  # seed is null: Hydra alone refuses this
    assert cfg_job(seeded, "~model.num_layers")["model"] == {}
    assert cfg_job(seeded, "+name='a b,c'")["name"] == "a b,c"
    assert seeded.run_dirs() == []  # --cfg runs nothing


def test_mlxpy_options_never_reach_the_user_config(seeded):
    cfg = cfg_job(seeded, "+mlxpy.use_logger=false", "mlxpy.logger.parent_log_dir=/tmp/x")
    assert "mlxpy" not in cfg
    result = seeded.run("--cfg", "mlxpy", "+mlxpy.use_logger=false")
    assert yaml.safe_load(result.stdout)["mlxpy"]["use_logger"] is False


def test_options_override_changes_log_dir(seeded, tmp_path):
    target = tmp_path / "custom_logs"
    result = seeded.run(f"+mlxpy.logger.parent_log_dir={target}")
    assert result.returncode == 0, result.stderr
    info = yaml.safe_load((target / "1" / "metadata" / "info.yaml").read_text())
    saved_options = yaml.safe_load((target / "1" / "metadata" / "mlxpy.yaml").read_text())
    assert info["status"] == "COMPLETE"
    assert saved_options["logger"]["parent_log_dir"] == str(target)


def test_config_groups_and_interpolation(project):
    project.write_config("defaults:\n  - model: small\n  - _self_\nseed: 0\nname: run-${seed}\n")
    project.write_config("width: 8\n", "model/small.yaml")
    project.write_config("width: 64\n", "model/big.yaml")
    assert cfg_job(project, "model=big", "seed=3") == {
        "model": {"width": 64},
        "seed": 3,
        "name": "run-3",
    }
    result = project.run("model=small,big")
    assert result.returncode == 0, result.stderr
    widths = sorted(project.config(r)["model"]["width"] for r in project.run_dirs())
    assert widths == [8, 64]
    assert "Config groups: model" in project.run("--help").stdout


def test_sweep_cfg_lists_each_job(seeded):
    result = seeded.run("--cfg", "job", "seed=1,2,3")
    assert result.stdout.count("# job ") == 3
    assert seeded.run_dirs() == []


def test_range_sweep(seeded):
    result = seeded.run("seed=range(0,3)", "+mlxpy.use_logger=false")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("The logger object") == 3


def test_help(seeded):
    result = seeded.run("--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout and "num_layers: 4" in result.stdout
    assert seeded.run_dirs() == []
