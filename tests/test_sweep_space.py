"""Search spaces beyond the product: zip, Hydra's sweep grammar (choice, range, interval,
tag(log|int, ...)), random samples drawn reproducibly, and a YAML space file; unit tests of
mlxpy.sweeping.space, then real ``python main.py ...`` launches."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
from conftest import REPO
from mlxpy.errors import ConfigError
from mlxpy.launching.overrides import parse_overrides
from mlxpy.sweeping.space import (
    SAMPLE_DIGITS,
    Choice,
    Interval,
    from_overrides,
    merge_overrides,
    read_space_file,
)
from mlxpy.testing import ProjectDir


def values_of(points: list[list[str]], key: str) -> list[str]:
    return [o.partition("=")[2] for p in points for o in p if o.partition("=")[0] == key]


def parsed(text: str):
    """The value Hydra reads from one override text."""
    (override,) = parse_overrides([text])
    assert not override.is_sweep_override(), text
    return override.value()


# -- zip ---------------------------------------------------------------------------------------
def test_zip_pairs_the_lists_and_keeps_fixed_overrides():
    space = from_overrides(["a=1,2,3", "fixed=7", "+b=x,y,z"])
    assert space.zip() == [
        ["fixed=7", "a=1", "+b=x"],
        ["fixed=7", "a=2", "+b=y"],
        ["fixed=7", "a=3", "+b=z"],
    ]
    assert len(space.product()) == 9  # the same space as a product
    assert from_overrides(["only=1"]).zip() == [["only=1"]]


def test_zip_of_unequal_lengths_names_each_length():
    with pytest.raises(ConfigError) as err:
        from_overrides(["a=1,2,3", "b=range(0,2)"]).zip()
    assert "'a' has 3" in str(err.value) and "'b' has 2" in str(err.value)


def test_zip_and_product_refuse_intervals():
    space = from_overrides(["a=1,2", "lr=interval(0,1)"])
    for plan in (space.zip, space.product):
        with pytest.raises(ConfigError, match=r"'lr' is an interval.*\+mlxpy\.sweep\.samples"):
            plan()


# -- the grammar ---------------------------------------------------------------------------------
def test_grammar_is_read_from_hydras_parsed_sweeps():
    space = from_overrides(
        [
            "a=choice(1,'x y')",
            "b=range(1,4)",
            "c=range(0,1,step=0.25)",
            "d=sort(3,1,2)",
            "e=interval(-1,2)",
            "+f=tag(log, interval(1e-4, 1e-1))",
            "g=tag(int, interval(1, 100))",
            "h=int(interval(1, 10))",
            "i=tag(log, int, interval(1, 1000))",
        ]
    )
    a, b, c, d, e, f, g, h, i = space.dimensions
    assert (a.prefix, a.key) == ("", "a") and isinstance(a, Choice)
    assert [parsed(f"a={v}") for v in a.values] == [1, "x y"]
    assert b.values == ("1", "2", "3")
    assert [float(v) for v in c.values] == [0.0, 0.25, 0.5, 0.75]
    assert d.values == ("1", "2", "3")
    assert e == Interval("", "e", -1.0, 2.0)
    assert f == Interval("+", "f", 1e-4, 1e-1, log=True)
    assert g == Interval("", "g", 1.0, 100.0, integer=True)
    assert h == Interval("", "h", 1.0, 10.0, integer=True)  # Hydra's cast, as in its Optuna sweeper
    assert i == Interval("", "i", 1.0, 1000.0, log=True, integer=True)


@pytest.mark.parametrize(
    "override, message",
    [
        ("a=interval(2,1)", "low < high"),
        ("a=tag(log, interval(0, 1))", "positive lower bound"),
        ("a=tag(int, interval(1.2, 1.8))", "holds no integer"),
        ("a=tag(log, range(1, 100))", "apply to an interval"),
        ("a=range(3,3)", "has no values"),
        ("a=glob(*)", "glob"),
    ],
)
def test_grammar_errors_say_what_to_write(override, message):
    with pytest.raises(ConfigError, match=message):
        from_overrides([override])


def test_shuffle_permutes_reproducibly_with_the_seed():
    space = from_overrides(["a=shuffle(range(0,8))", "b=1,2"])
    orders = {seed: values_of(space.product(seed), "a")[::2] for seed in range(10)}
    assert all(sorted(o, key=int) == [str(v) for v in range(8)] for o in orders.values())
    assert orders[3] == values_of(space.product(3), "a")[::2]  # same seed, same order
    assert len({tuple(o) for o in orders.values()}) > 1  # the seed changes it


# -- samples -----------------------------------------------------------------------------------
def test_samples_are_reproducible_and_follow_the_seed():
    space = from_overrides(["lr=tag(log, interval(1e-5, 1))", "opt=adam,sgd", "n=range(1,9)"])
    assert space.sample(20, 7) == space.sample(20, 7)
    assert space.sample(20, 7) != space.sample(20, 8)
    assert space.sample(5, 7) == space.sample(20, 7)[:5]  # a prefix: more samples extend it


def test_a_sample_is_derived_from_random_random_only():
    """The contract that makes samples the same on every machine: one Random(seed), and each
    interval value computed from its random() floats (derived here independently)."""
    low, high = 0.5, 4.0
    space = from_overrides([f"x=interval({low},{high})", f"y=tag(log, interval({low},{high}))"])
    rng = random.Random(11)
    expected = []
    for _ in range(3):
        x = low + rng.random() * (high - low)
        y = math.exp(math.log(low) + rng.random() * (math.log(high) - math.log(low)))
        expected.append([float(f"{x:.{SAMPLE_DIGITS}g}"), float(f"{y:.{SAMPLE_DIGITS}g}")])
    got = [[parsed(o) for o in point] for point in space.sample(3, 11)]
    assert got == expected


def test_log_interval_stays_in_bounds_and_is_spread_in_log_space():
    low, high = 1e-4, 1e-1
    points = from_overrides([f"lr=tag(log, interval({low}, {high}))"]).sample(600, 0)
    lrs = [parsed(p[0]) for p in points]
    assert all(isinstance(v, float) and low <= v <= high for v in lrs)
    decades = [sum(10**k <= v < 10 ** (k + 1) for v in lrs) for k in (-4, -3, -2)]
    assert all(150 <= n <= 250 for n in decades), decades  # about 200 each: even in log space
    linear = from_overrides([f"lr=interval({low}, {high})"]).sample(600, 0)
    below = sum(parsed(p[0]) < 1e-2 for p in linear)
    assert below < 120 < 300 < decades[0] + decades[1]  # linear: ~10% under 1e-2, log: ~2/3


def test_integer_intervals_give_ints_within_both_bounds():
    space = from_overrides(["n=tag(int, interval(1, 4))", "k=tag(int, log, interval(1, 1000))"])
    points = space.sample(300, 5)
    ns = [parsed(p[0]) for p in points]
    ks = [parsed(p[1]) for p in points]
    assert all(type(v) is int for v in ns + ks)
    assert set(ns) == {1, 2, 3, 4}  # both ends reached
    assert all(1 <= k <= 1000 for k in ks)
    assert 0.25 < sum(k < 32 for k in ks) / len(ks) < 0.75  # ~half below sqrt(1000): log space


def test_a_finite_space_gives_distinct_points_and_refuses_too_many():
    space = from_overrides(["a=1,2,3", "b=x,'y z'", "c=range(0,4)"])
    every = {tuple(p) for p in space.product()}
    for count in (5, 24):  # the rejection path and the shuffle path
        drawn = space.sample(count, 2)
        assert len({tuple(p) for p in drawn}) == count and {tuple(p) for p in drawn} <= every
    assert {tuple(p) for p in space.sample(24, 2)} == every
    with pytest.raises(ConfigError, match=r"more points than the space has \(24\)"):
        space.sample(25, 2)
    with pytest.raises(ConfigError, match="at least 1"):
        space.sample(0, 2)


def test_choices_are_drawn_uniformly():
    points = from_overrides(["a=1,2,3,4", "lr=interval(0,1)"]).sample(800, 9)
    counts = [values_of(points, "a").count(v) for v in "1234"]
    assert all(150 <= n <= 250 for n in counts), counts


def test_sampled_values_reparse_to_the_same_value():
    space = from_overrides(["s=choice('a b','c,d',plain)", "lr=interval(1e-9, 1e9)"])
    for point in space.sample(50, 4):
        s, lr = point[0].partition("=")[2], point[1]
        assert parsed(f"s={s}") in {"a b", "c,d", "plain"}
        text = lr.partition("=")[2]
        assert parsed(lr) == float(text) and repr(float(text)) == text


# -- the space file ------------------------------------------------------------------------------
def test_space_file_format(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "lr: 'tag(log, interval(1e-4, 1e-1))'\n"
        "model.depth: [2, 4, 8]\n"
        "seed: range(0,3)\n"
        "optim: adam\n"
        "single: [only]\n"
        "scale: 0.5\n"
        "names: [a b, 'c,d', 1e-3, true, null, [1, 2]]\n"
        "data:\n  root: /tmp/x\n  splits: [train, val]\n"
        "+extra: 1\n"
    )
    texts = read_space_file(path)
    assert texts[:2] == ["lr=tag(log, interval(1e-4, 1e-1))", "model.depth=2,4,8"]
    space = from_overrides(texts)
    assert space.fixed == ["optim=adam", "single=only", "scale=0.5", "data.root=/tmp/x", "+extra=1"]
    keys = [d.key for d in space.dimensions]
    assert keys == ["lr", "model.depth", "seed", "names", "data.splits"]
    names = space.dimensions[3]
    assert [parsed(f"k={v}") for v in names.values] == ["a b", "c,d", 1e-3, True, None, [1, 2]]


def test_command_line_wins_over_the_space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("a: [1, 2]\nb: [x, y]\nc: 3\n")
    merged = merge_overrides(read_space_file(path), ["b=z", "+c=4,5"])
    assert merged == ["a=1,2", "b=z", "+c=4,5"]
    space = from_overrides(["b=z"], space_file=path)
    assert space.product() == [["c=3", "b=z", "a=1"], ["c=3", "b=z", "a=2"]]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: [1\n", "malformed YAML .* line"),
        ("- a\n- b\n", "must hold a mapping.*got a list"),
        ("", "must hold a mapping.*got nothing"),
        ("1: x\n", "keys must be non-empty strings"),
        ("a: []\n", "empty list of choices"),
        ("a: 'interval(1,'\n", "not a value in Hydra's override grammar"),
        ("mlxpy.sweep.samples: 3\n", "sweep options"),
        ("~a: 1\n", "deletions"),
        ("model:\n  depth: []\n", "key 'model.depth': an empty list"),
    ],
)
def test_space_file_errors_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        read_space_file(path)
    assert str(path) in str(err.value)


# -- real launches ---------------------------------------------------------------------------------
def launch_configs(project, *args):
    """The configs of the runs one launch makes (in run order), and the launch's result."""
    before = set(project.run_dirs())
    result = project.run(*args)
    assert result.returncode == 0, result.stderr
    return [project.config(r) for r in project.run_dirs() if r not in before]


def test_zip_launch_runs_the_paired_points(seeded):
    configs = launch_configs(
        seeded, "seed=1,2,3", "optimizer.lr=0.1,0.2,0.3", "+mlxpy.sweep.mode=zip"
    )
    got = [(c["seed"], c["optimizer"]["lr"]) for c in configs]
    assert got == list(zip([1, 2, 3], [0.1, 0.2, 0.3], strict=True))


def test_sampled_launches_are_reproducible(seeded):
    space = [
        "optimizer.lr=tag(log, interval(1e-4, 1e-1))",
        "model.num_layers=tag(int, interval(1, 8))",
    ]

    def draw(seed):
        configs = launch_configs(
            seeded, *space, "+mlxpy.sweep.samples=5", f"+mlxpy.sweep.seed={seed}"
        )
        return [(c["optimizer"]["lr"], c["model"]["num_layers"]) for c in configs]

    first, again, other = draw(3), draw(3), draw(4)
    assert len(first) == 5 and first == again and first != other
    assert all(1e-4 <= lr <= 1e-1 and 1 <= n <= 8 and type(n) is int for lr, n in first + other)
    expected = from_overrides(space).sample(5, 3)  # the launch ran what the space draws
    assert first == [(parsed(p[0]), parsed(p[1])) for p in expected]
    recorded = [seeded.info(r)["overrides"] for r in seeded.run_dirs()[:5]]
    assert recorded == expected  # each run records its drawn point, without mlxpy.sweep.*


def test_samples_in_mlxpy_yaml_with_scheduled_jobs(tmp_path):
    """A job the scheduler starts rebuilds its launch from its own point's overrides, with
    mlxpy.yaml's sweep block: a space that varies nothing is that one point."""
    project = ProjectDir(tmp_path / "p")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config(
        {
            "scheduler": {"name": "LocalScheduler", "max_workers": 2},
            "use_scheduler": True,
            "sweep": {"samples": 3, "seed": 5},
        },
        "mlxpy.yaml",
    )
    result = project.run("lr=tag(log, interval(1e-3, 1))")
    assert result.returncode == 0, result.stderr
    infos = project.wait(3, 120)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 3
    expected = from_overrides(["lr=tag(log, interval(1e-3, 1))"]).sample(3, 5)
    assert [project.config(r)["lr"] for r in project.run_dirs()] == [parsed(p[0]) for p in expected]
    assert from_overrides(["a=1"]).sample(4, 0) == [["a=1"]]


def test_readme_space_file_example_runs(seeded):
    readme = (REPO / "README.md").read_text()
    (block,) = [
        b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "optimizer.lr: " in b
    ]
    seeded.write_config(block, "space.yaml")
    configs = launch_configs(seeded, "+mlxpy.sweep.space=space.yaml", "+mlxpy.sweep.samples=6")
    assert len(configs) == 6
    for c in configs:
        assert 1e-4 <= c["optimizer"]["lr"] <= 1e-1 and c["optimizer"]["name"] == "adam"
        assert c["model"]["num_layers"] in (2, 4, 8) and c["seed"] in (0, 1, 2)
        assert c["data"] == {"batch_size": 64}


def test_space_file_launch(seeded):
    seeded.write_config(
        "optimizer.lr: [0.1, 0.01]\nmodel:\n  num_layers: range(1,3)\nseed: 5\n", "space.yaml"
    )
    configs = launch_configs(seeded, "+mlxpy.sweep.space=space.yaml", "seed=9")
    got = sorted((c["optimizer"]["lr"], c["model"]["num_layers"], c["seed"]) for c in configs)
    assert got == sorted(itertools.product([0.1, 0.01], [1, 2], [9]))  # seed=9 wins over 5
    absolute = seeded.configs / "space.yaml"
    assert len(launch_configs(seeded, f"+mlxpy.sweep.space={absolute}")) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["optimizer.lr=interval(0,1)"], "is an interval.*samples"),
        (["seed=1,2", "optimizer.lr=1,2,3", "+mlxpy.sweep.mode=zip"], "'seed' has 2"),
        (["+mlxpy.sweep.space=nope.yaml"], "nope.yaml not found.*config dir"),
        (["+mlxpy.sweep.space=bad.yaml"], "bad.yaml.*must hold a mapping"),
        (["seed=1,2", "+mlxpy.sweep.samples=3"], r"more points than the space has \(2\)"),
        (["seed=1,2", "+mlxpy.sweep.samples=1", "+mlxpy.sweep.mode=zip"], "not from a zip"),
    ],
)
def test_launch_errors_are_setup_errors(seeded, args, message):
    seeded.write_config("[1, 2]\n", "bad.yaml")
    result = seeded.run(*args)
    assert result.returncode == 2, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert seeded.run_dirs() == []
