"""Running a launch from the version manager's frozen copy: the launching process freezes the
code once, then replaces itself (``exec``) with the same command run from the copy.

What the copy cannot know (the original project dir, the config dir to read, the version
info, files to keep in each run) travels in its launch record (:mod:`mlxpy.launching.record`).
"""

from __future__ import annotations

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
from mlxpy.launching.record import ENV_VAR, LaunchRecord
from mlxpy.plugins import get_plugins


class UncommittedConfigWarning(MlxpyWarning):
    """The config dir is not in the snapshot, so jobs read it from the working copy."""


def config_dir_for_jobs(config_dir: Path, task_file: Path, snapshot_script: Path | None) -> Path:
    """The config dir every job of a launch reads, recorded in its launch record: the one
    beside the task (``config_path``), or, when the code is frozen, its copy in the snapshot;
    when the snapshot lacks ``config.yaml`` or ``mlxpy.yaml`` (the configs are not
    committed), the working copy's, with a warning."""
    if snapshot_script is None:
        return config_dir
    if config_dir.is_relative_to(task_file.parent):
        frozen = snapshot_script.parent / config_dir.relative_to(task_file.parent)
        if all((frozen / name).is_file() for name in (CONFIG_FILE, OPTIONS_FILE)):
            return frozen
    warnings.warn(
        f"{config_dir} is not committed, so jobs read their config from the working copy; "
        "commit it to freeze the config with the code.",
        UncommittedConfigWarning,
        stacklevel=3,
    )
    return config_dir


def freeze(
    vm: Any, task_file: Path, project_dir: Path, config_dir: Path, ignore: list[str]
) -> tuple[Path, LaunchRecord]:
    """Freeze the code with ``vm``; return the script's path in the frozen copy and the
    launch record of the processes that run from it (not written: its writer decides where)."""
    snapshot_script = Path(vm.make_working_directory(str(task_file), ignore=ignore))
    get_plugins().hook.mlxpy_after_workdir_created(info=vm.info)
    record = LaunchRecord(
        project_dir=str(project_dir),
        config_dir=str(config_dir_for_jobs(config_dir, task_file, snapshot_script)),
        argv=list(sys.argv),
        version_manager=vm.info,
        run_files=dict(vm.run_files),
    )
    return snapshot_script, record


def relaunch_from_snapshot(
    vm: Any,
    task_file: Path,
    project_dir: Path,
    config_dir: Path,
    argv: list[str],
    ignore: list[str],
) -> None:
    """Freeze the code with ``vm`` and exec the same command from the frozen copy, its launch
    record written beside the snapshots (``.launches/``)."""
    snapshot_script, record = freeze(vm, task_file, project_dir, config_dir, ignore)
    snapshot_root = Path(vm.info.get("snapshot_path") or snapshot_script.parent)
    launches = snapshot_root.parent / ".launches"
    launches.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record_path = record.write(launches / f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}.json")
    env = {**os.environ, ENV_VAR: str(record_path)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, str(snapshot_script), *argv], env)
