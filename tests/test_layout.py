"""The subsystem layout keeps the import paths users and plugins already use."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlxpy._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_still_imports_as_the_same_module(old):
    """In a fresh interpreter: one DeprecationWarning naming the new home, and the very same
    module object (so classes and isinstance agree)."""
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({MOVED[old]!r})\n"
        "assert old is new, (old, new)\n"
        "assert new.__spec__.name == new.__name__, new.__spec__\n"
        "print([str(w.message) for w in caught if w.category is DeprecationWarning])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"{old} moved to {MOVED[old]}" in out.stdout


def test_dotted_class_paths_of_the_old_layout_still_select(tmp_path):
    from mlxpy.plugins import PluginRegistry

    registry = PluginRegistry(load_entry_points=False)
    with pytest.warns(DeprecationWarning):
        cls = registry.resolve("scheduler", "mlxpy.local_scheduler.LocalScheduler")
    from mlxpy.scheduling.local import LocalScheduler

    assert cls is LocalScheduler
    import mlxpy

    assert registry.resolve("logger", "mlxpy.logger.DefaultLogger") is mlxpy.DefaultLogger


def test_builtins_register_from_a_source_tree_without_entry_points(tmp_path):
    """No installed metadata at all: a copy of the package on PYTHONPATH still has its builtins."""
    import shutil
    from pathlib import Path

    import mlxpy

    src = Path(mlxpy.__file__).parent
    shutil.copytree(src, tmp_path / "mlxpy", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import mlxpy\n"
        "from mlxpy.plugins import PluginRegistry\n"
        "reg = PluginRegistry(load_entry_points=False)\n"
        "print(mlxpy.__file__)\n"
        "print(*(reg.available(role) for role in ('logger', 'scheduler', 'version_manager')))\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); exec(sys.argv[2])",
            str(tmp_path),
            code,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first.startswith(str(tmp_path))
    assert second == "['DefaultLogger'] ['LocalScheduler', 'Scheduler'] ['GitVM']"
