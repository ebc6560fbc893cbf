"""A plain launch takes the composed config from the cache of earlier launches, without
importing Hydra, and gets exactly what Hydra would compose: any change of the config files
(even of the same size, at once), a config Hydra reads from elsewhere, interpolations, or a
damaged cache entry mean composing as usual."""

from __future__ import annotations

import json

import pytest

TASK = """
import json, sys
import mlxpy
from omegaconf import OmegaConf

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    print(json.dumps({"config": OmegaConf.to_container(ctx.config, resolve=True),
                      "hydra": "hydra" in sys.modules}))

if __name__ == "__main__":
    my_task()
"""


@pytest.fixture
def cached(project, tmp_path):
    project.write_main(TASK)
    project.cache = tmp_path / "cache"
    return project


def launch(project, *args):
    result = project.run(*args, env={"XDG_CACHE_HOME": str(project.cache)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def entries(project):
    return sorted((project.cache / "mlxpy" / "compose").glob("*.json"))


def test_a_second_plain_launch_skips_hydra_and_gets_the_same_config(cached):
    cached.write_config("seed: 3\nmodel:\n  layers: [1, 2]\n  lr: 1.0e-3\n  name: mlp\n")
    first = launch(cached)
    assert first["hydra"] is True and len(entries(cached)) == 1
    second = launch(cached)
    assert second == {"config": first["config"], "hydra": False}
    assert second["config"] == {"seed": 3, "model": {"layers": [1, 2], "lr": 0.001, "name": "mlp"}}
    with_override = launch(cached, "seed=4")  # overrides: composed by Hydra, as before
    assert with_override["hydra"] is True and with_override["config"]["seed"] == 4


def test_a_changed_file_of_the_same_size_is_composed_again(cached):
    cached.write_config("seed: 1\n")
    assert launch(cached)["config"] == {"seed": 1}
    cached.write_config("seed: 2\n")  # same size, maybe the same mtime
    assert launch(cached) == {"config": {"seed": 2}, "hydra": True}
    (cached.configs / "model").mkdir()
    cached.write_config("width: 8\n", name="model/small.yaml")
    cached.write_config("defaults:\n  - model: small\n  - _self_\nseed: 2\n")
    assert launch(cached)["config"] == {"model": {"width": 8}, "seed": 2}
    cached.write_config("width: 9\n", name="model/small.yaml")  # a group's file changed
    assert launch(cached) == {"config": {"model": {"width": 9}, "seed": 2}, "hydra": True}
    assert launch(cached) == {"config": {"model": {"width": 9}, "seed": 2}, "hydra": False}


def test_interpolations_and_hydra_blocks_are_never_kept(cached):
    cached.write_config("seed: 1\nname: run-${seed}\n")
    for _ in range(2):
        assert launch(cached) == {"config": {"seed": 1, "name": "run-1"}, "hydra": True}
    assert entries(cached) == []
    cached.write_config("seed: 1\nhydra:\n  job:\n    name: x\n")
    for _ in range(2):
        assert launch(cached) == {"config": {"seed": 1}, "hydra": True}
    assert entries(cached) == []


def test_a_damaged_or_foreign_entry_is_ignored(cached):
    cached.write_config("seed: 5\n")
    launch(cached)
    (entry,) = entries(cached)
    data = json.loads(entry.read_text())
    data["config"] = {"seed": 666}  # a foreign entry, with another key
    data["key"][-1] = []
    entry.write_text(json.dumps(data))
    assert launch(cached) == {"config": {"seed": 5}, "hydra": True}
    entry.write_text("{not json")
    assert launch(cached) == {"config": {"seed": 5}, "hydra": True}
    assert launch(cached) == {"config": {"seed": 5}, "hydra": False}  # rewritten, then used
