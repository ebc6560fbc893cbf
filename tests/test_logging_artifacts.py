"""Artifacts and checkpoints: every builtin type round-trips, names stay inside the run dir,
failures record nothing, custom and plugin-provided types."""

from __future__ import annotations

import json

import pytest

ARTIFACT_TASK = """
import json, os
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image
import mlxpy
from mlxpy import ArtifactType
from mlxpy.plugins import get_plugins

class CsvTypes:
    @mlxpy.hookimpl
    def mlxpy_register_artifact_types(self):
        save = lambda rows, path: open(path, "w").write("\\n".join(",".join(r) for r in rows))
        load = lambda path: [line.split(",") for line in open(path).read().splitlines()]
        return [ArtifactType("csv", save, load, ".csv")]

get_plugins().register(CsvTypes(), name="csv-types")

def report(what, fn):
    try:
        value = fn()
        print(what, "OK", value)
    except Exception as exc:
        print(what, type(exc).__name__, exc)

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    lg = ctx.logger
    print("no checkpoint:", lg.load_checkpoint())
    lg.log_artifacts({"a": [1, 2]}, "obj", "pickle")
    lg.log_artifacts({"k": 1.5}, "sub/dir/data", "json")
    lg.log_artifacts({"y": [1, "b"]}, "conf", "yaml")
    lg.log_artifacts("hello\\n", "notes", "text")
    lg.log_artifacts(np.arange(6).reshape(2, 3), "weights", "numpy")
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    lg.log_artifacts(fig, "curve", "image")
    lg.log_artifacts(Image.new("RGB", (4, 3), (255, 0, 0)), "red", "image")
    lg.log_artifacts([["a", "b"], ["1", "2"]], "table", "csv")
    lg.register_artifact_type("upper", lambda s, p: open(p, "w").write(s.upper()),
                              lambda p: open(p).read(), ".up")
    lg.log_artifacts("shout", "word", "upper")
    print("pickle", lg.load_artifacts("obj", "pickle"))
    print("json", lg.load_artifacts("sub/dir/data"))
    print("yaml", lg.load_artifacts("conf", "yaml"))
    print("text", repr(lg.load_artifacts("notes", "text")))
    print("numpy", lg.load_artifacts("weights", "numpy").tolist())
    print("image", lg.load_artifacts("red", "image").size, lg.load_artifacts("curve").size)
    print("csv", lg.load_artifacts("table", "csv"))
    print("upper", lg.load_artifacts("word"))
    for name in ("../escape", "/abs/path", "a/../../b", "", "a/./b"):
        report(f"name {name!r}:", lambda: lg.log_artifacts(1, name, "pickle"))
    report("unknown type:", lambda: lg.log_artifacts(1, "x", "parquet"))
    report("failed save:", lambda: lg.log_artifacts({1, 2}, "aset", "json"))
    report("bad image:", lambda: lg.log_artifacts("not an image", "img", "image"))
    lg.log_checkpoint({"epoch": 3, "weights": [0.1, 0.2]})
    lg.log_checkpoint({"best": True}, log_name="best")
    print("checkpoint", lg.load_checkpoint(), lg.load_checkpoint("best"))

if __name__ == "__main__":
    my_task()
"""


@pytest.fixture
def artifacts_run(project):
    project.write_main(ARTIFACT_TASK)
    result = project.run()
    assert result.returncode == 0, result.stderr
    (run_dir,) = project.run_dirs()
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    return run_dir, lines


def test_builtin_types_round_trip(artifacts_run):
    run_dir, out = artifacts_run
    assert out["pickle"] == "{'a': [1, 2]}"
    assert out["json"] == "{'k': 1.5}"
    assert out["yaml"] == "{'y': [1, 'b']}"
    assert out["text"] == "'hello\\n'"
    assert out["numpy"] == "[[0, 1, 2], [3, 4, 5]]"
    assert out["image"] == "(4, 3) (100, 100)"
    art = run_dir / "artifacts"
    assert json.loads((art / "json" / "sub" / "dir" / "data.json").read_text()) == {"k": 1.5}
    assert (art / "numpy" / "weights.npy").read_bytes()[:6] == b"\x93NUMPY"
    assert (art / "image" / "red.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (art / "pickle" / "obj.pkl").exists() and (art / "text" / "notes.txt").exists()


def test_custom_and_plugin_types(artifacts_run):
    run_dir, out = artifacts_run
    assert out["csv"] == "[['a', 'b'], ['1', '2']]"
    assert out["upper"] == "SHOUT"
    assert (run_dir / "artifacts" / "csv" / "table.csv").exists()


def test_names_never_leave_the_run_dir(project, tmp_path):
    project.write_main(ARTIFACT_TASK)
    result = project.run()
    reports = [line for line in result.stdout.splitlines() if line.startswith("name ")]
    assert len(reports) == 5
    for line in reports[:4]:  # '../escape', '/abs/path', 'a/../../b', ''
        assert "ValueError invalid artifact name" in line
    assert reports[4].startswith("name 'a/./b': OK")  # normalised to a/b, inside the run dir
    (run_dir,) = project.run_dirs()
    assert (run_dir / "artifacts" / "pickle" / "a" / "b.pkl").exists()
    assert not any(tmp_path.rglob("escape*"))
    assert not (run_dir / "artifacts" / "b.pkl").exists()


def test_errors_record_nothing(artifacts_run):
    run_dir, out = artifacts_run
    assert out["unknown"].startswith("type: ValueError unknown artifact type 'parquet'")
    assert (
        "known types: csv, image, json, numpy, pickle, text, torch, upper, yaml" in out["unknown"]
    )
    assert out["failed"].startswith("save: TypeError")
    assert out["bad"].startswith("image: TypeError an 'image' artifact must be")
    json_dir = run_dir / "artifacts" / "json"
    assert sorted(p.name for p in json_dir.rglob("*")) == ["data.json", "dir", "sub"]
    assert not (run_dir / "artifacts" / "image" / "img.png").exists()
    assert not [p for p in (run_dir / "artifacts").rglob(".*")]  # no temp files left


def test_checkpoint_round_trip(artifacts_run):
    run_dir, out = artifacts_run
    assert out["no"] == "checkpoint: None"
    assert out["checkpoint"] == "{'epoch': 3, 'weights': [0.1, 0.2]} {'best': True}"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.pkl",
        "last_ckpt.pkl",
    ]
