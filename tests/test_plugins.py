"""The plugin system: registration in-process, entry points of real distributions on
``sys.path``, broken plugins, selection by name and by dotted path, lifecycle hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlxpy
import pytest
import yaml
from conftest import untimed
from importlib_metadata import EntryPoint
from mlxpy.plugins import PluginLoadWarning, PluginRegistry


@pytest.fixture
def registry():
    """A fresh registry with autoload off, holding only the builtins."""
    return PluginRegistry(load_entry_points=False)  # builtins come first, in every registry


class MemoryLogger(mlxpy.DefaultLogger):
    name = "MemoryLogger"


class InProcessPlugin:
    @mlxpy.hookimpl
    def mlxpy_register_loggers(self):
        return [MemoryLogger]


def test_builtins_are_registered_like_plugins(registry):
    assert registry.available("logger") == ["DefaultLogger"]
    assert registry.available("scheduler") == ["LocalScheduler", "Scheduler"]
    assert registry.available("version_manager") == ["GitVM"]
    assert registry.resolve("logger", "DefaultLogger") is mlxpy.DefaultLogger


def test_in_process_plugin_registration(registry):
    name = registry.register(InProcessPlugin(), name="memory")
    assert registry.resolve("logger", "MemoryLogger") is MemoryLogger
    (row,) = [r for r in registry.describe() if r["name"] == "memory"]
    assert row["provides"] == ["logger:MemoryLogger"]
    assert row["hooks"] == ["mlxpy_register_loggers"]
    registry.unregister(name)
    with pytest.raises(mlxpy.UnknownPluginError):
        registry.resolve("logger", "MemoryLogger")


def test_misspelled_hookimpl_is_rejected(registry):
    class Typo:
        @mlxpy.hookimpl
        def mlxpy_befor_run(self, ctx):
            pass

    with pytest.raises(mlxpy.PluginError, match="did you mean 'mlxpy_before_run'"):
        registry.register(Typo(), name="typo")
    assert "typo" not in registry.records
    registry.pm.check_pending()  # nothing left dangling


def test_wrong_hook_arguments_are_rejected(registry):
    class BadArgs:
        @mlxpy.hookimpl
        def mlxpy_before_run(self, ctx, nonexistent):
            pass

    with pytest.raises(mlxpy.PluginError, match="nonexistent"):
        registry.register(BadArgs(), name="badargs")


def test_broken_entry_point_is_a_warning_then_an_error_only_when_selected(registry):
    broken = EntryPoint(name="broken", value="mlxpy_no_such_module_xyz", group="mlxpy")
    with pytest.warns(PluginLoadWarning, match="broken.*ModuleNotFoundError"):
        registry.load_entry_points([broken])
    assert registry.records["broken"].status == "failed"
    assert registry.resolve("logger", "DefaultLogger") is mlxpy.DefaultLogger
    with pytest.raises(mlxpy.UnknownPluginError) as err:
        registry.resolve("logger", "WandbLogger", where="mlxpy.yaml: logger.name")
    message = str(err.value)
    assert "Unknown logger 'WandbLogger' (mlxpy.yaml: logger.name)" in message
    assert "Available loggers: DefaultLogger" in message
    assert "'broken' is installed but failed to load: ModuleNotFoundError" in message


def test_duplicate_names_name_both_providers(registry):
    class Other:
        @mlxpy.hookimpl
        def mlxpy_register_loggers(self):
            class DefaultLogger(mlxpy.DefaultLogger):
                name = "DefaultLogger"

            return [DefaultLogger]

    registry.register(Other(), name="other")
    with pytest.raises(
        mlxpy.PluginError,
        match="'mlxpy.rundir.logger' and 'other'|'other' and 'mlxpy.rundir.logger'",
    ):
        registry.resolve("logger", "DefaultLogger")


def test_dotted_path_must_subclass_the_base(registry):
    assert registry.resolve("logger", "mlxpy.logger.DefaultLogger") is mlxpy.DefaultLogger
    with pytest.raises(mlxpy.PluginError, match="subclass of mlxpy.logger.Logger"):
        registry.resolve("logger", "mlxpy.versioning.base.GitVM")


# -- real distributions, found through their entry points ---------------------------------

ACME_PLUGIN = """
import json, os
import mlxpy

class AcmeLogger(mlxpy.DefaultLogger):
    name = "AcmeLogger"

    def __init__(self, greeting: str = "hi", **kwargs):
        super().__init__(**kwargs)
        self.greeting = greeting

    @mlxpy.hookimpl
    def mlxpy_after_run(self, ctx, status):
        with open(os.path.join(ctx.info.log_dir, "acme.json"), "w") as fh:
            json.dump({"status": status, "greeting": self.greeting}, fh)

@mlxpy.hookimpl
def mlxpy_register_loggers():
    return [AcmeLogger]

@mlxpy.hookimpl
def mlxpy_before_run(ctx):
    print("acme saw run", ctx.info.log_id, flush=True)
"""


def make_distribution(
    site: Path, dist: str, version: str, module: str, source: str, entry_value: str | None = None
) -> None:
    """A real installed distribution: package + ``.dist-info`` with entry points."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[mlxpy]\n{dist} = {entry_value or module}\n")


@pytest.fixture
def acme_site(tmp_path):
    site = tmp_path / "site"
    make_distribution(site, "acme-logger", "1.2.0", "acme_logger", ACME_PLUGIN)
    return site


def test_third_party_logger_selected_by_name(seeded, acme_site):
    env = {"PYTHONPATH": str(acme_site)}
    result = seeded.run("+mlxpy.logger.name=AcmeLogger", "+mlxpy.logger.greeting=hello", env=env)
    assert result.returncode == 0, result.stderr
    assert "<class 'acme_logger.AcmeLogger'>" in result.stdout
    assert "acme saw run 1" in result.stdout  # the plugin's module-level hook
    (run_dir,) = seeded.run_dirs()
    assert json.loads((run_dir / "acme.json").read_text()) == {
        "status": "COMPLETE",
        "greeting": "hello",
    }
    assert seeded.info(run_dir)["plugins"]["acme-logger"] == "1.2.0"


def test_selected_instance_hooks_fire_only_when_selected(seeded, acme_site):
    result = seeded.run(env={"PYTHONPATH": str(acme_site)})
    assert result.returncode == 0, result.stderr
    assert "<class 'mlxpy.logger.DefaultLogger'>" in result.stdout
    assert "acme saw run 1" in result.stdout  # broadcast hooks fire for every run
    (run_dir,) = seeded.run_dirs()
    assert not (run_dir / "acme.json").exists()  # AcmeLogger's own hook did not


def test_unknown_setting_of_plugin_class(seeded, acme_site):
    result = seeded.run(
        "+mlxpy.logger.name=AcmeLogger",
        "+mlxpy.logger.greting=x",
        env={"PYTHONPATH": str(acme_site)},
    )
    assert result.returncode == 2
    assert "Did you mean 'logger.greeting'?" in result.stderr


def test_broken_distribution(seeded, tmp_path):
    site = tmp_path / "site"
    make_distribution(
        site, "mlxpy-wandb", "0.1.0", "mlx_wandb", "import wandb_is_not_installed_here\n"
    )
    env = {"PYTHONPATH": str(site)}
    ok = seeded.run(env=env)
    assert ok.returncode == 0, ok.stderr
    assert "failed to load" in ok.stderr  # one warning, the run goes on
    bad = seeded.run("+mlxpy.logger.name=WandbLogger", env=env)
    assert bad.returncode == 2
    assert (
        "The plugin 'mlxpy-wandb' (mlxpy-wandb 0.1.0) is installed but failed to load: "
        "ModuleNotFoundError"
    ) in bad.stderr


def test_dotted_path_logger_next_to_the_script(seeded):
    (seeded.root / "mylogger.py").write_text(
        textwrap.dedent("""
        import mlxpy

        class MyLogger(mlxpy.DefaultLogger):
            pass
    """)
    )
    result = seeded.run("+mlxpy.logger.name=mylogger.MyLogger")
    assert result.returncode == 0, result.stderr
    assert "<class 'mylogger.MyLogger'>" in result.stdout
    assert len(seeded.run_dirs()) == 1


def test_plugins_command_lists_distributions(acme_site):
    env = {**os.environ, "PYTHONPATH": str(acme_site)}
    out = subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    rows = {row["name"]: row for row in json.loads(out)}
    builtins = {name: row for name, row in rows.items() if row["distribution"] == "mlxpy"}
    assert list(builtins) == [
        "mlxpy.rundir.logger",
        "mlxpy.scheduling.local",
        "mlxpy.versioning.base",
        "mlxpy.sweeping.sweeper",
    ]
    assert [p for row in builtins.values() for p in row["provides"]] == [
        "logger:DefaultLogger",
        "scheduler:Scheduler",
        "scheduler:LocalScheduler",
        "version_manager:GitVM",
        "sweeper:BasicSweeper",
    ]
    acme = rows["acme-logger"]
    assert (acme["version"], acme["status"]) == ("1.2.0", "active")
    assert acme["provides"] == ["logger:AcmeLogger"]
    assert acme["hooks"] == ["mlxpy_before_run", "mlxpy_register_loggers"]
    text = subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", "plugins"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "acme-logger  [acme-logger 1.2.0]  active" in text


def test_metrics_hook_and_options_saved(seeded, tmp_path):
    seeded.write_main("""
        import mlxpy

        class Spy:
            @mlxpy.hookimpl
            def mlxpy_after_metrics_logged(self, ctx, metrics, log_name, step):
                print("hook", log_name, metrics, step)

        from mlxpy.plugins import get_plugins
        get_plugins().register(Spy(), name="spy")

        @mlxpy.launch(config_path="./configs")
        def my_task(ctx):
            ctx.logger.log_metrics({"loss": 0.5}, log_name="train", step=3)

        if __name__ == "__main__":
            my_task()
    """)
    result = seeded.run()
    assert result.returncode == 0, result.stderr
    assert "hook train {'loss': 0.5} 3" in result.stdout  # as the task passed them
    (run_dir,) = seeded.run_dirs()
    record = json.loads((run_dir / "metrics" / "train.json").read_text())
    assert untimed([record]) == [{"step": 3, "loss": 0.5}]  # and the time the logger added
    saved = yaml.safe_load((run_dir / "metadata" / "mlxpy.yaml").read_text())
    assert saved["logger"]["name"] == "DefaultLogger" and saved["use_logger"] is True


def test_run_lifecycle_hooks_order_on_error(seeded):
    seeded.write_main("""
        import mlxpy
        from mlxpy.plugins import get_plugins

        class Spy:
            @mlxpy.hookimpl
            def mlxpy_before_run(self, ctx):
                print("before", ctx.info.status, flush=True)

            @mlxpy.hookimpl
            def mlxpy_on_run_error(self, ctx, error):
                print("error", type(error).__name__, error, flush=True)

            @mlxpy.hookimpl
            def mlxpy_after_run(self, ctx, status):
                print("after", status, ctx.info.status, flush=True)

        get_plugins().register(Spy(), name="spy")

        @mlxpy.launch(config_path="./configs")
        def my_task(ctx):
            print("task", flush=True)
            raise RuntimeError("bad")

        if __name__ == "__main__":
            my_task()
    """)
    result = seeded.run()
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "before RUNNING",
        "task",
        "error RuntimeError bad",
        "after FAILED FAILED",
    ]
