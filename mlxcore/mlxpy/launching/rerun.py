"""``mlxpy rerun``: a run's recorded command, run again (into a new run dir that records which
run it re-runs), or continued in place (``--resume``).

The command is rebuilt from the run's info, never from a shell string: the recorded Python,
the task's script (from the recorded commit's snapshot when GitVM froze the code) and the
run's own overrides, each one argument. A run dir is data from a possibly shared dir: only a
run the user recorded is re-run, and nothing in it is executed but the script it names.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError

#: the variable ``mlxpy rerun`` sets: the uid (else the log id) of the run re-run, recorded
#: as ``info.rerun_of`` of the runs the command starts
ENV_VAR = "MLXPY_RERUN_OF"
_UNSET: Any = object()
_taken: Any = _UNSET
#: overrides that are the launch's, not the run's: dropped (a rerun is a new run of one point)
_DROPPED = ("mlxpy.logger.forced_log_id", "mlxpy.sweep.")


class RerunError(MlxpyError):
    """A run cannot be re-run: its record is incomplete, or its code or Python is gone."""


def take_rerun_of() -> str | None:
    """The run this process re-runs (once per process; the variable is removed, so the
    task's own child processes do not inherit it)."""
    global _taken
    if _taken is _UNSET:
        value = os.environ.pop(ENV_VAR, None)
        _taken = value if value and len(value) <= 100 and value.isprintable() else None
    return _taken


@dataclass
class Rerun:
    """The command that re-runs a run: run with ``subprocess.run(argv, cwd=cwd, env=...)``."""

    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    snapshot: str | None = None  # the snapshot the code runs from, with GitVM


def _strings(value: Any, what: str, log_id: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RerunError(f"run {log_id} has no usable {what} in its info; it cannot be re-run")
    return list(value)


def _kept(override: str) -> bool:
    key = override.lstrip("+~").partition("=")[0]
    return not any(key == d or (d.endswith(".") and key.startswith(d)) for d in _DROPPED)


def build(run_root: Path, info: dict[str, Any], resume: bool) -> Rerun:
    """The command for run ``run_root`` (its ``info``): a new run, or with ``resume`` the same
    one continued (``+mlxpy.logger.forced_log_id``)."""
    from mlxpy.rundir.layout import RunDir

    log_id = run_root.name
    run = RunDir(run_root)
    owner = os.lstat(run.info).st_uid
    if owner != os.getuid():
        raise RerunError(
            f"run {log_id} was recorded by another user (uid {owner}); mlxpy rerun runs only "
            f"commands you recorded yourself. Check {run.info} and run its command yourself "
            "if you trust it"
        )
    overrides = [o for o in _strings(info.get("overrides"), "overrides", log_id) if _kept(o)]
    python = info.get("python_executable")
    if not isinstance(python, str) or not os.access(python, os.X_OK):
        raise RerunError(
            f"run {log_id} ran with the Python {python!r}, which is not here any more; "
            "recreate that environment, or run the task yourself"
        )
    cwd = info.get("cwd")
    if not isinstance(cwd, str) or not os.path.isdir(cwd):
        raise RerunError(f"run {log_id} ran in {cwd!r}, which is not a directory any more")
    env: dict[str, str] = {}
    snapshot = None
    vm = info.get("version_manager")
    if isinstance(vm, dict) and vm.get("snapshot_path"):
        script, env[_record_var()] = _from_snapshot(run, info, vm, log_id)
        snapshot = str(vm["snapshot_path"])
    else:
        script = info.get("script_path")
        if not isinstance(script, str) or not os.path.isfile(script):
            raise RerunError(f"run {log_id} ran the script {script!r}, which is gone")
    if resume:
        overrides.append(f"+mlxpy.logger.forced_log_id={log_id}")
    else:
        uid = info.get("uid")
        env[ENV_VAR] = uid if isinstance(uid, str) and uid else str(log_id)
    return Rerun([python, script, *overrides], cwd, env, snapshot)


def _record_var() -> str:
    from mlxpy.launching.record import ENV_VAR as LAUNCH_VAR

    return LAUNCH_VAR


def _from_snapshot(run: Any, info: dict[str, Any], vm: dict[str, Any], log_id: Any) -> tuple:
    """The script in the recorded commit's snapshot, and a launch record that runs it as the
    original launch did (its project dir, config dir and version info)."""
    from mlxpy.launching.record import LaunchRecord
    from mlxpy.versioning.git_snapshot import MARKER

    snapshot = Path(str(vm["snapshot_path"]))
    relative = vm.get("script")
    commit = vm.get("commit")
    if not (snapshot / MARKER).is_file() or not isinstance(relative, str):
        raise RerunError(
            f"run {log_id} ran commit {commit} from the snapshot {snapshot}, which is gone or "
            f"incomplete; check out {commit} and launch it again to rebuild it"
        )
    script = (snapshot / relative).resolve()
    if not script.is_relative_to(snapshot.resolve()) or not script.is_file():
        raise RerunError(f"run {log_id}: its script {relative!r} is not in the snapshot")
    config_dir = info.get("config_dir")
    project_dir = info.get("project_dir")
    if not isinstance(config_dir, str) or not os.path.isdir(config_dir):
        raise RerunError(
            f"run {log_id} does not record the config dir it read (runs started before mlxpy "
            "recorded info.config_dir cannot be re-run from their snapshot); launch it again"
        )
    if not isinstance(project_dir, str):
        raise RerunError(f"run {log_id} records no project dir")
    argv = _strings(info.get("argv"), "command line", log_id)
    record = LaunchRecord(
        project_dir=project_dir, config_dir=config_dir, argv=argv, version_manager=dict(vm)
    )
    launches = snapshot.parent / ".launches"
    launches.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = record.write(launches / f"rerun-{stamp}-{os.getpid()}-{secrets.token_hex(3)}.json")
    return str(script), str(path)
