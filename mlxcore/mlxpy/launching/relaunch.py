"""Running a launch from the version manager's frozen copy: the launching process freezes the
code once, then replaces itself (``exec``) with the same command run from the copy.

What the copy cannot know (the original project dir, the version info, files to keep in each
run) travels in a small JSON file named by the ``MLXPY_LAUNCH`` environment variable.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyWarning
from mlxpy.launching.configs import CONFIG_FILE
from mlxpy.launching.options import OPTIONS_FILE
from mlxpy.plugins import get_plugins
from mlxpy.rundir.atomic import atomic_write_text

ENV_VAR = "MLXPY_LAUNCH"


class UncommittedConfigWarning(MlxpyWarning):
    """The config dir is not in the snapshot, so jobs read it from the working copy."""


def take_launch_record() -> dict[str, Any] | None:
    """The record left by the launching process, removed from the environment so that
    processes the task starts do not inherit it."""
    path = os.environ.pop(ENV_VAR, None)
    if not path:
        return None
    return json.loads(Path(path).read_text())


def freeze(vm: Any, task_file: Path, config_dir: Path, ignore: list[str]) -> tuple[Path, Path]:
    """Freeze the code with ``vm``; return the script's path in the frozen copy and the
    launch record (the file ``MLXPY_LAUNCH`` names) for the processes that run from it."""
    snapshot_script = Path(vm.make_working_directory(str(task_file), ignore=ignore))
    get_plugins().hook.mlxpy_after_workdir_created(info=vm.info)
    snapshot_root = Path(vm.info.get("snapshot_path") or snapshot_script.parent)
    record: dict[str, Any] = {
        "project_dir": str(task_file.parent),
        "version_manager": vm.info,
        "run_files": vm.run_files,
        "config_dir": None,
        "argv": list(sys.argv),
    }
    frozen_configs = (
        snapshot_script.parent / config_dir.relative_to(task_file.parent)
        if config_dir.is_relative_to(task_file.parent)
        else None
    )
    if frozen_configs is None or not all(
        (frozen_configs / name).is_file() for name in (CONFIG_FILE, OPTIONS_FILE)
    ):
        record["config_dir"] = str(config_dir)
        warnings.warn(
            f"{config_dir} is not committed, so jobs read their config from the working copy; "
            "commit it to freeze the config with the code.",
            UncommittedConfigWarning,
            stacklevel=2,
        )
    launches = snapshot_root.parent / ".launches"
    launches.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record_path = launches / f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}.json"
    atomic_write_text(record_path, json.dumps(record, indent=1))
    return snapshot_script, record_path


def relaunch_from_snapshot(
    vm: Any, task_file: Path, config_dir: Path, argv: list[str], ignore: list[str]
) -> None:
    """Freeze the code with ``vm`` and exec the same command from the frozen copy."""
    snapshot_script, record_path = freeze(vm, task_file, config_dir, ignore)
    env = {**os.environ, ENV_VAR: str(record_path)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, str(snapshot_script), *argv], env)
