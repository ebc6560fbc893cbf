"""The run info: what each key means, which survive a resume, and how it is stored.

``metadata/info.yaml`` is for people; ``metadata/run.json`` (``{"config", "info"}``) is the
same, for fast readers. Both are replaced atomically on every update.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlxpy.rundir import codec, safe
from mlxpy.rundir.atomic import atomic_write_bytes, atomic_write_yaml
from mlxpy.rundir.flat import flatten
from mlxpy.rundir.layout import RunDir

#: every key the core writes, with its type; loggers and plugins may add their own
INFO_SCHEMA: dict[str, str] = {
    "format": "int: the run-directory format version",
    "uid": "str: globally unique, time-ordered run id (UUIDv7), set when the dir is claimed",
    "status": "str: a RunStatus",
    "log_id": "int: the run's directory name in its parent log dir",
    "log_dir": "str: absolute path of the run dir when it was written",
    "start_time": "str: ISO 8601 with offset, of the current attempt",
    "end_time": "str|null",
    "duration_s": "float|null: of the current attempt",
    "hostname": "str",
    "pid": "int",
    "user": "str",
    "python_executable": "str",
    "python_version": "str",
    "command": "str: the command line, shell-quoted",
    "argv": "list[str]",
    "overrides": "list[str]",
    "cwd": "str",
    "script_path": "str",
    "project_dir": "str",
    "mlxpy_version": "str",
    "launch_id": "str: shared by the runs of one launch (a sweep)",
    "plugins": "dict[str, str]: distribution versions of the plugins loaded",
    "heartbeat_interval_s": "float",
    "error": "{type: str, message: str}: why the run failed",
    "exit_code": "int: the code of sys.exit(n) that ended the task",
    "interrupt_reason": "str: the signal name",
    "restarts": "int: how many times the run was resumed",
    "history": "list[dict]: earlier attempts (start_time, end_time, status, hostname, pid, ...)",
    "requeued": "bool: the scheduler was asked to start it again",
    "scheduler": "dict: name, job_id, array_index, ... (set at submission)",
    "submit_time": "str",
    "version_manager": "dict: commit, dirty, snapshot dir ...",
}
#: set when the run dir is claimed or submitted, and kept by every later attempt
KEPT_ON_RESUME = ("uid", "scheduler", "submit_time", "launch_id")
#: what one earlier attempt keeps in ``history``
ATTEMPT_KEYS = ("start_time", "end_time", "status", "hostname", "pid")


def write_info(root: Path, info: dict[str, Any], config: dict[str, Any]) -> None:
    """Write both info files. Also used outside the run, by ``mlxpy status`` for runs that
    never started."""
    run = RunDir(Path(root))
    atomic_write_yaml(run.info, info)
    atomic_write_bytes(run.run_json, codec.encode({"config": config, "info": info}), fsync=False)


def read_yaml(path: Path, root: Path | None = None) -> Any:
    """A small YAML file of a run (safe loader, bounded, no links); None if unreadable."""
    try:
        text = safe.read_bytes(path, safe.MAX_METADATA_BYTES, root)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return None


def read_info(root: Path) -> dict[str, Any] | None:
    info = read_yaml(RunDir(Path(root)).info, Path(root))
    return info if isinstance(info, dict) else None


def read_record(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, info)`` of a run, from ``run.json`` or, for runs written by another logger,
    the YAML files. Raises on an unreadable run (OSError, ValueError)."""
    run = RunDir(Path(root))
    try:
        record = codec.decode(safe.read_bytes(run.run_json, safe.MAX_METADATA_BYTES, run.root))
        if not isinstance(record, dict):
            raise ValueError(f"{run.run_json} is not a JSON object")
        config, info = record.get("config"), record.get("info")
    except FileNotFoundError:
        info = _yaml_or_raise(run.info, run.root)
        config = _yaml_or_raise(run.config, run.root)
    if not isinstance(info, dict) or not isinstance(config, dict):
        raise ValueError("info or config is not a mapping")
    return config, info


def _yaml_or_raise(path: Path, root: Path) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(safe.read_bytes(path, safe.MAX_METADATA_BYTES, root), Loader=loader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    except RecursionError:
        raise ValueError(f"{path.name}: nested too deeply to read") from None


def carry_history(previous: dict[str, Any], info: dict[str, Any]) -> None:
    """Put the earlier attempts of a resumed run into ``info``."""
    earlier = list(previous.get("history") or [])
    attempt = {key: previous.get(key) for key in ATTEMPT_KEYS}
    job_id = (previous.get("scheduler") or {}).get("job_id")
    if job_id is not None:  # which scheduler job each attempt ran in
        attempt["job_id"] = job_id
    if previous.get("requeued"):
        attempt["requeued"] = True
    earlier.append(attempt)
    info["restarts"] = int(previous.get("restarts") or 0) + 1
    info["history"] = earlier


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable differences between the config a run had and the one it resumes with."""
    before, after = flatten(old or {}), flatten(new or {})
    changes = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            changes.append(f"{key}: {before[key]!r} -> (removed)")
        elif key not in before:
            changes.append(f"{key}: (new) -> {after[key]!r}")
        elif before[key] != after[key]:
            changes.append(f"{key}: {before[key]!r} -> {after[key]!r}")
    return changes
