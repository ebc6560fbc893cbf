"""Values survive the round trip through run directories: types in the Reader's frames,
ordinary pandas on them, names, config keys and depth, options, quoting of scheduled jobs,
and checkpoints and artifact types read back. Every test runs real launches."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mlxpy
import pandas as pd
import pytest
from conftest import untimed
from mlxpy.testing import ProjectDir

TYPES_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    nan = float("nan")
    ctx.logger.log_metrics({"loss": 1.0, "bad": nan, "n": 3, "ok": True, "tag": "a"}, step=0)
    ctx.logger.log_metrics({"loss": 2.0, "bad": nan, "n": 4, "ok": False, "tag": "b"}, step=1)

if __name__ == "__main__":
    task()
"""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def typed(tmp_path_factory) -> ProjectDir:
    """Two runs: ``lr: 10.`` (an integral float), an int key only the second run has."""
    project = ProjectDir(tmp_path_factory.mktemp("typed") / "p", TYPES_TASK)
    project.configs.mkdir()
    (project.configs / "config.yaml").write_text(
        "seed: 0\nlr: 10.\nwidth: 3\nflag: true\nname: small\n"
    )
    first = project.run()
    assert first.returncode == 0, first.stderr
    second = project.run("+extra=5", "width=4")
    assert second.returncode == 0, second.stderr
    return project


def test_reader_keeps_types(typed):
    reader = mlxpy.Reader(typed.logs)
    runs = reader.filter()
    assert runs["config.lr"].dtype == "float64" and runs.loc[1, "config.lr"] == 10.0
    assert isinstance(runs.loc[1, "config.lr"].item(), float)
    assert runs["train.loss.last"].dtype == "float64"
    assert isinstance(runs.loc[2, "train.loss.last"].item(), float)
    # NaN stays NaN: a float cell for which isna is True, not <NA>
    bad = runs.loc[1, "train.bad.last"]
    assert runs["train.bad.last"].dtype == "float64" and math.isnan(bad)
    assert runs["train.bad.last"].isna().all()
    assert list(reader.filter("train.bad.last == None").index) == [1, 2]
    # an int key missing in one run stays an int (nullable), not 1.0 / NaN
    assert str(runs["config.extra"].dtype) == "Int64"
    assert runs.loc[2, "config.extra"] == 5 and runs["config.extra"].isna().tolist() == [
        True,
        False,
    ]
    assert runs["config.width"].dtype == "int64"
    assert pd.api.types.is_bool_dtype(runs["config.flag"]) and runs.loc[1, "config.flag"]
    assert pd.api.types.is_string_dtype(runs["config.name"])
    assert pd.api.types.is_bool_dtype(runs["train.ok.last"])
    fields = reader.fields
    assert fields["config.lr"] == "float" and fields["config.extra"] == "int"
    assert fields["config.flag"] == "bool" and fields["info.start_time"] == "datetime"
    # the long metrics frame keeps them too
    long = runs.mlxpy.metrics("train")
    assert long["loss"].dtype == "float64" and long["loss"].tolist() == [1.0, 2.0] * 2
    assert long["n"].dtype == "int64" and long["bad"].isna().all()
    assert long["log_id"].tolist() == [1, 1, 2, 2]


def test_frames_work_with_ordinary_pandas(typed):
    reader = mlxpy.Reader(typed.logs)
    runs = reader.filter()
    assert runs.index.name == "log_id" and "log_id" not in runs.columns
    flat = runs.reset_index()
    assert flat["log_id"].tolist() == [1, 2]
    assert list(runs.sort_values("log_id", ascending=False).index) == [2, 1]
    assert runs.groupby("config.width")["train.loss.last"].mean().to_dict() == {3: 2.0, 4: 2.0}
    assert list(reader.filter("log_id == 2").index) == [2]
    assert reader.filter(result_format="records")[1]["log_id"] == 2
    # the accessor takes the frame after reset_index too
    assert flat.mlxpy.metrics("train")["log_id"].tolist() == [1, 1, 2, 2]
    # times are tz-aware datetimes
    for column in ("info.start_time", "info.end_time"):
        assert isinstance(runs[column].dtype, pd.DatetimeTZDtype), runs[column].dtype
    assert (runs["info.end_time"] >= runs["info.start_time"]).all()
    assert list(reader.filter("info.start_time > '2000-01-01'").index) == [1, 2]
    assert list(reader.filter("info.end_time < '2000-01-01'").index) == []
    # the CLI's json output of every column (log_id was both index and column)
    out = cli(typed.root, "runs", str(typed.logs), "--format", "json", "-c", "*")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["log_id"] for r in rows] == [1, 2]
    assert pd.Timestamp(rows[0]["info.start_time"]).tzinfo is not None
    assert rows[1]["config.lr"] == 10.0


def test_empty_and_missing_log_dirs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing"
    runs = mlxpy.Reader(empty).filter()
    assert len(runs) == 0 and runs.index.name == "log_id"
    assert runs.mlxpy.metrics("train").empty
    with pytest.raises(mlxpy.MlxpyError, match="no log directory"):
        mlxpy.Reader(missing)
    commands = {
        "runs": ["runs", "{dir}"],
        "show": ["show", "1", "{dir}"],
        "plot": ["plot", "{dir}", "-m", "train.loss", "-o", str(tmp_path / "c.png")],
        "status": ["status", "{dir}"],
    }
    for name, args in commands.items():
        for where in (empty, missing):
            out = cli(tmp_path, *[a.format(dir=where) for a in args])
            assert "Traceback" not in out.stderr, (name, where, out.stderr)
            if where is missing:
                assert out.returncode == 2, (name, out.stderr)
                assert out.stderr.startswith("mlxpy: error: no log directory"), out.stderr
            elif name in ("runs", "status"):  # an empty dir: no runs, and that is no error
                assert out.returncode == 0 and out.stdout.strip() == "(no runs)", out
            else:  # nothing to show or plot
                assert out.returncode == 2 and out.stderr.startswith("mlxpy: error: "), out


NAMES_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    log = ctx.logger
    long = "x" * 300
    attempts = {
        "log_newline": lambda: log.log_metrics({"a": 1}, log_name="train\\n"),
        "artifact_newline": lambda: log.log_artifacts({"a": 1}, "w\\n", "json"),
        "artifact_tab": lambda: log.log_artifacts({"a": 1}, "sub/w\\tx", "json"),
        "checkpoint_newline": lambda: log.log_checkpoint({"a": 1}, "ck\\n"),
        "log_long": lambda: log.log_metrics({"a": 1}, log_name=long),
        "artifact_long": lambda: log.log_artifacts({"a": 1}, long, "json"),
        "checkpoint_long": lambda: log.log_checkpoint({"a": 1}, long),
        "step_twice": lambda: log.log_metrics({"step": 5, "loss": 1.0}, step=3),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            print(name, "OK")
        except Exception as exc:
            print(name, type(exc).__name__, str(exc).replace("\\n", "|"))
    log.log_metrics({"loss": 0.5}, step=1)

if __name__ == "__main__":
    task()
"""


def test_names_refused_clearly(tmp_path):
    project = ProjectDir(tmp_path / "p", NAMES_TASK)
    result = project.run()
    assert result.returncode == 0, result.stderr
    outcome = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert set(outcome) == {
        "log_newline",
        "artifact_newline",
        "artifact_tab",
        "checkpoint_newline",
        "log_long",
        "artifact_long",
        "checkpoint_long",
        "step_twice",
    }
    for name, text in outcome.items():
        assert text.startswith("ValueError "), (name, text)  # never OSError ENAMETOOLONG
    assert "invalid log name" in outcome["log_newline"]
    assert "invalid checkpoint name" in outcome["checkpoint_newline"]
    assert "control characters" in outcome["artifact_newline"]
    assert "control characters" in outcome["artifact_tab"]
    assert "more than 200" in outcome["log_long"]
    assert "more than 200" in outcome["checkpoint_long"]
    assert "at most 200 bytes" in outcome["artifact_long"]
    assert "pass the step once" in outcome["step_twice"]
    (run_dir,) = project.run_dirs()
    written = [p.name for p in run_dir.rglob("*")]
    assert not [n for n in written if "\n" in n or "\t" in n or "x" * 200 in n], written
    # the refused record wrote nothing; the next one did
    records = mlxpy.read_metrics(run_dir / "metrics" / "train.json")
    assert untimed(records) == [{"step": 1, "loss": 0.5}]
    # the Reader refuses the same names, with the same clear error
    runs = mlxpy.Reader(project.logs).filter()
    for bad in ("x" * 300, "train\n", "../metrics/train"):
        with pytest.raises(ValueError, match="invalid log name"):
            runs.mlxpy.metrics(bad)
    with pytest.raises(ValueError, match="at most 200 bytes"):
        runs.mlxpy.artifact("x" * 300)


PRINT_TASK = """
import mlxpy

def seed_everything(seed):
    print("SEEDED", seed, flush=True)

@mlxpy.launch(config_path="./configs", seeding_function=SEEDING)
def task(ctx):
    print("TASK RAN", flush=True)

if __name__ == "__main__":
    task()
"""


def launch_project(tmp_path: Path, config: str, seeding: str = "None") -> ProjectDir:
    project = ProjectDir(tmp_path / "p", PRINT_TASK.replace("SEEDING", seeding))
    project.configs.mkdir(exist_ok=True)
    (project.configs / "config.yaml").write_text(config)
    return project


def assert_setup_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("mlxpy: error: "), result.stderr
    assert "Traceback" not in result.stderr and "TASK RAN" not in result.stdout
    assert len(result.stderr) < 2000, result.stderr  # one message, not a dump
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_colliding_dotted_keys_are_an_error(tmp_path):
    project = launch_project(tmp_path, "seed: 0\na.b: 10\na:\n  b: 20\n")
    assert_setup_error(project.run(), "'a.b'", "config.yaml", "collide")
    assert project.run_dirs() == []
    (project.configs / "config.yaml").write_text("seed: 0\nc.d: 10\n")
    assert project.run().returncode == 0  # a dotted key alone is fine
    assert_setup_error(project.run("+c.d=3"), "'c.d'", "config.yaml with the overrides +c.d=3")
    assert len(project.run_dirs()) == 1


def deep_yaml(levels: int) -> str:
    return "".join("  " * i + "k:\n" for i in range(levels)) + "  " * levels + "v: 1\n"


def test_too_deep_configs_are_an_error(tmp_path):
    project = launch_project(tmp_path, deep_yaml(100))
    assert_setup_error(project.run(), "config.yaml", "64 levels")
    (project.configs / "config.yaml").write_text(deep_yaml(2000))
    assert_setup_error(project.run(), "config.yaml", "64 levels")
    # a config group option, composed by Hydra, and a deep mapping given as an override
    (project.configs / "config.yaml").write_text("defaults:\n  - model: ok\n  - _self_\nseed: 0\n")
    (project.configs / "model").mkdir()
    (project.configs / "model" / "ok.yaml").write_text("width: 1\n")
    (project.configs / "model" / "deep.yaml").write_text(deep_yaml(2000))
    assert project.run().returncode == 0
    assert_setup_error(project.run("model=deep"), "model=deep", "64 levels")
    (project.configs / "model" / "deep.yaml").write_text(deep_yaml(80))
    assert_setup_error(project.run("model=deep"), "model=deep", "64 levels")
    assert len(project.run_dirs()) == 1


def test_too_deep_config_given_to_the_task(tmp_path):
    from mlxpy.errors import ConfigError

    @mlxpy.launch(config_path=str(tmp_path / "configs"))
    def task(ctx):
        raise AssertionError("must not run")

    deep: dict = {}
    node = deep
    for _ in range(2000):
        node["k"] = {}
        node = node["k"]
    with pytest.raises(ConfigError, match="64 levels"):
        task(deep)
    with pytest.raises(ConfigError, match="'a.b'"):
        task({"a.b": 1, "a": {"b": 2}})


def test_disabled_block_is_still_validated(tmp_path):
    project = launch_project(tmp_path, "seed: 0\n")
    project.run("--cfg", "job")  # creates mlxpy.yaml with the defaults
    defaults = project.options()
    assert defaults["use_version_manager"] is False and defaults["use_scheduler"] is False
    options = project.options()
    options["version_manager"]["interactive_mod"] = True
    project.write_config(options, "mlxpy.yaml")
    assert_setup_error(
        project.run(),
        "'version_manager.interactive_mod'",
        "Did you mean 'version_manager.interactive_mode'?",
        "mlxpy.yaml",
    )
    options = project.options()
    options["scheduler"] = {"name": "LocalScheduler", "max_worker": 3}
    options["version_manager"] = defaults["version_manager"]
    project.write_config(options, "mlxpy.yaml")
    assert_setup_error(project.run(), "'scheduler.max_worker'", "'scheduler.max_workers'")
    assert project.run_dirs() == []
    # a disabled block naming a plugin not installed here (a cluster's) is not an error
    options["scheduler"] = {"name": "ClusterOnlyScheduler", "partition": "gpu"}
    project.write_config(options, "mlxpy.yaml")
    result = project.run()
    assert result.returncode == 0 and "TASK RAN" in result.stdout, result.stderr


def test_mlxpy_key_in_config_is_refused(tmp_path):
    project = launch_project(tmp_path, "seed: 0\nmlxpy:\n  use_logger: false\n")
    assert_setup_error(project.run(), "'mlxpy' is reserved", "mlxpy.yaml", "+mlxpy.<option>")
    assert not project.logs.exists()


def test_seeding_function_needs_a_seed(tmp_path):
    project = launch_project(tmp_path, "lr: 0.1\n", seeding="seed_everything")
    assert_setup_error(project.run(), "seeding_function", "'seed'", "+seed=<n>")
    assert project.run_dirs() == []
    given = project.run("+seed=7")
    assert given.returncode == 0, given.stderr
    assert given.stdout.splitlines() == ["SEEDED 7", "TASK RAN"]


def test_scheduled_jobs_with_awkward_log_paths(tmp_path):
    """The job's own overrides pass Hydra's grammar again: a ',' must not become a sweep, a
    quote must not end a string, non-ASCII must survive the job script."""
    project = ProjectDir(tmp_path / "p")  # SUITE_TASK: logs loss = lr * seed, prints msg
    project.logs = project.root / "logs, o'neil é"
    project.write_config({"seed": 0, "lr": 0.5, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config(
        {
            "logger": {"name": "DefaultLogger", "parent_log_dir": "./logs, o'neil é"},
            "scheduler": {"name": "LocalScheduler", "max_workers": 2},
            "use_scheduler": True,
        },
        "mlxpy.yaml",
    )
    result = project.run("seed=1,2", "msg=\"a 'b', é\"")
    assert result.returncode == 0, result.stderr
    infos = project.wait(2, 90)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 2, infos
    for number, run_dir in enumerate(project.run_dirs(), start=1):
        assert run_dir.parent == project.logs
        out = (run_dir / "job.stdout").read_text(encoding="utf-8")
        assert f"RUN committed 0.5 {number} \"a 'b', é\"" in out, out
    others = [p for p in project.root.iterdir() if p.name.startswith("logs") and p != project.logs]
    assert not others  # no second log dir from a path cut at the ',' or the quote
    runs = mlxpy.Reader(project.logs).filter()
    assert runs["train.loss.last"].tolist() == [0.5, 1.0]


ACME_PLUGIN = """
import mlxpy
from mlxpy import ArtifactType
from mlxpy.plugins import get_plugins

class AcmeTypes:
    @mlxpy.hookimpl
    def mlxpy_register_artifact_types(self):
        save = lambda obj, path: open(path, "w").write("ACME:" + obj)
        load = lambda path: open(path).read().removeprefix("ACME:")
        return [ArtifactType("acme", save, load, ".acme")]

def install():
    get_plugins().register(AcmeTypes(), name="acme-types")
"""

ARTIFACT_TYPES_TASK = """
import builtins, sys
import mlxpy
import acme

acme.install()

class Marker:
    '''Unpickling it creates a file: shows when a checkpoint is loaded.'''
    def __init__(self, path):
        self.path = path
    def __reduce__(self):
        return (builtins.open, (self.path, "w"))

@mlxpy.launch(config_path="./configs")
def task(ctx):
    if ctx.config.part == 1:
        ctx.logger.log_artifacts("hello", "thing", "acme")
        ctx.logger.log_artifacts({"a": 1}, "sub/./summary", "json")
        ctx.logger.log_checkpoint({"epoch": 3})
        ctx.logger.log_checkpoint(Marker(ctx.config.marker), "best")
    else:  # a resumed attempt adds to what the first one logged
        ctx.logger.log_artifacts("more", "extra", "text")

if __name__ == "__main__":
    task()
"""

READ_ARTIFACTS = """
import sys
import mlxpy
import acme

mode, logs, marker = sys.argv[1:]
if mode == "installed":
    acme.install()
runs = mlxpy.Reader(logs).filter()
print("summary", runs.mlxpy.artifact("sub/summary").tolist())
print("extra", runs.mlxpy.artifact("extra").tolist())
import os
print("marker_at_start", os.path.exists(marker))
if mode == "given":
    kind = mlxpy.ArtifactType("acme", None, lambda path: open(path).read().upper(), ".acme")
    print("thing", runs.mlxpy.artifact("thing", artifact_type=kind).tolist())
else:
    try:
        print("thing", runs.mlxpy.artifact("thing").tolist())
    except mlxpy.MlxpyError as exc:
        print("thing_error", type(exc).__name__, exc)
    try:
        runs.mlxpy.artifact("thing", artifact_type="acme")
    except ValueError as exc:
        print("typed_error", exc)
try:
    runs.mlxpy.artifact("best")
except mlxpy.MlxpyError as exc:
    print("best_untyped", type(exc).__name__, exc)
print("marker_untyped", os.path.exists(marker))
print("ckpt", runs.mlxpy.artifact("last_ckpt", artifact_type="pickle").tolist())
print("no_ckpt", runs.mlxpy.artifact("nothing", artifact_type="pickle").tolist())
print("last", runs.mlxpy.checkpoint().tolist())
print("marker_before_best", os.path.exists(marker))
print("best", [type(v).__name__ for v in runs.mlxpy.checkpoint("best")])
print("marker_after_best", os.path.exists(marker))
"""


def test_checkpoints_and_artifact_types_from_the_reader(tmp_path):
    project = ProjectDir(tmp_path / "p", ARTIFACT_TYPES_TASK)
    (project.root / "acme.py").write_text(ACME_PLUGIN)
    (project.root / "read.py").write_text(READ_ARTIFACTS)
    marker = tmp_path / "unpickled"
    project.write_config({"seed": 0, "part": 1, "marker": str(marker)})
    assert project.run().returncode == 0
    resumed = project.run("part=2", "+mlxpy.logger.forced_log_id=1")
    assert resumed.returncode == 0, resumed.stderr
    (run_dir,) = project.run_dirs()
    manifest = run_dir / "metadata" / "artifacts.json"
    assert json.loads(manifest.read_text()) == {
        "extra": "text",
        "sub/summary": "json",
        "thing": "acme",
    }
    assert (run_dir / "artifacts" / "acme" / "thing.acme").read_text() == "ACME:hello"
    assert not marker.exists()

    def read(mode: str) -> dict[str, str]:
        out = subprocess.run(
            [sys.executable, "read.py", mode, str(project.logs), str(marker)],
            cwd=project.root,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        return dict(line.split(" ", 1) for line in out.stdout.splitlines())

    missing = read("missing")  # the acme plugin is not installed in this process
    assert missing["summary"] == "[{'a': 1}]" and missing["extra"] == "['more']"
    assert missing["thing_error"].startswith(
        "MissingArtifactTypeError run 1 logged 'thing' as 'acme': artifact type 'acme' "
        "is not installed: install the plugin that provides it"
    ), missing["thing_error"]
    assert missing["typed_error"].startswith("artifact type 'acme' is not installed")
    # loading a checkpoint is unpickling: only the explicit call does it
    assert missing["marker_at_start"] == "False" and missing["last"] == "[{'epoch': 3}]"
    # the accessor's artifact() finds checkpoints, and unpickles only when asked by type
    assert missing["best_untyped"].startswith("ExplicitTypeError 'best' is a checkpoint")
    assert 'artifact_type="pickle"' in missing["best_untyped"]
    assert missing["marker_untyped"] == "False"
    assert missing["ckpt"] == "[{'epoch': 3}]" and missing["no_ckpt"] == "[None]"
    assert missing["marker_before_best"] == "False"
    assert missing["best"] == "['TextIOWrapper']" and missing["marker_after_best"] == "True"
    marker.unlink()
    assert read("installed")["thing"] == "['hello']"
    assert read("given")["thing"] == "['ACME:HELLO']"


CSV_TYPES_PLUGIN = """
import mlxpy

class CsvTypes:
    @mlxpy.hookimpl
    def mlxpy_register_artifact_types(self):
        def save(rows, path):
            with open(path, "w") as fh:
                fh.write("\\n".join(",".join(map(str, row)) for row in rows))
        def load(path):
            with open(path) as fh:
                return [line.split(",") for line in fh.read().splitlines()]
        return [mlxpy.ArtifactType("csv", save, load, ".csv")]

plugin = CsvTypes()
"""

CSV_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    ctx.logger.log_artifacts([[1, 2], [3, 4]], "table", "csv")
    ctx.logger.log_artifacts("plain", "note", "text")

if __name__ == "__main__":
    task()
"""


def install_site(site: Path, dist: str, version: str, module: str, source: str) -> None:
    """A real installed distribution (a ``.dist-info`` with an ``mlxpy`` entry point) in a
    directory a process finds it in only when ``site`` is on its ``PYTHONPATH``."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[mlxpy]\n{module} = {module}:plugin\n")


def test_a_missing_artifact_type_names_the_distribution_that_provided_it(tmp_path):
    site = tmp_path / "site"
    install_site(site, "mlx-csv-types", "0.3.1", "csvtypes", CSV_TYPES_PLUGIN)
    project = ProjectDir(tmp_path / "p", CSV_TASK)
    project.write_config({"seed": 0})
    with_plugin = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    project.env["PYTHONPATH"] = with_plugin
    done = project.run()
    assert done.returncode == 0, done.stderr
    (run_dir,) = project.run_dirs()
    assert json.loads((run_dir / "metadata" / "artifacts.json").read_text()) == {
        "note": "text",
        "table": {
            "type": "csv",
            "plugin": "csvtypes",
            "distribution": "mlx-csv-types",
            "version": "0.3.1",
        },
    }
    script = (
        "import sys, mlxpy\n"
        "runs = mlxpy.Reader(sys.argv[1]).filter()\n"
        "print(runs.mlxpy.artifact('note').tolist())\n"
        "try:\n"
        "    print(runs.mlxpy.artifact('table').tolist())\n"
        "except mlxpy.MlxpyError as exc:\n"
        "    print(type(exc).__name__, exc.distribution, exc)\n"
    )

    def read(pythonpath: str) -> list[str]:
        env = {**os.environ, "PYTHONPATH": pythonpath}
        cmd = [sys.executable, "-c", script, str(project.logs)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    note, table = read(os.environ.get("PYTHONPATH", ""))  # the plugin is not installed here
    assert note == "['plain']"
    assert table.startswith(
        "MissingArtifactTypeError mlx-csv-types run 1 logged 'table' as 'csv': artifact type "
        "'csv' is not installed: install mlx-csv-types (it provided plugin 'csvtypes' "
        "(distribution mlx-csv-types 0.3.1) where it was logged)"
    ), table
    assert read(with_plugin)[1] == "[[['1', '2'], ['3', '4']]]"


def test_job_script_forwards_warnings_with_awkward_log_paths(tmp_path):
    """A scheduler's warning signal is forwarded and noted even when the run dir's path holds
    a space, ',', a quote and non-ASCII (the note path sits inside the trap's handler)."""
    import os
    import signal
    import time

    from mlxpy.scheduling import job_script
    from mlxpy.scheduling.base import ScheduledJob, Scheduler

    class Warned(Scheduler):
        name = "Warned"
        warning_signals = {"SIGUSR1": "TIMEOUT"}

        def directives(self, job: ScheduledJob) -> list[str]:
            return []

    log_dir = tmp_path / "logs, o'neil é" / "1"
    log_dir.mkdir(parents=True)
    started = tmp_path / "started"
    job = ScheduledJob(log_id=1, log_dir=log_dir, overrides=[], name="n")
    child = ["sh", "-c", f"touch '{started}'; sleep 3"]
    script = tmp_path / "script.sh"
    script.write_text(job_script.run_script(Warned(), job, child, tmp_path, {}))
    shell = subprocess.Popen(["/bin/bash", str(script)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    note = log_dir / job_script.WARNING_NOTE
    while shell.poll() is None and not note.exists():  # until the handler is installed
        os.kill(shell.pid, signal.SIGUSR1)
        time.sleep(0.2)
    _, err = shell.communicate(timeout=30)
    assert shell.returncode == 0 and "trap" not in err, err
    assert note.read_text() == "SIGUSR1\n"
