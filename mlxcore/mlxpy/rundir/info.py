"""The run info: what each key means, which survive a resume, and how it is stored.

``metadata/info.yaml`` is for people; ``metadata/run.json`` (``{"config", "info"}``) is the
same, for fast readers. Both are replaced atomically on every update.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from mlxpy.context import RunInfo
from mlxpy.rundir import codec, safe
from mlxpy.rundir.atomic import atomic_write_bytes, atomic_write_yaml
from mlxpy.rundir.flat import flatten
from mlxpy.rundir.layout import RunDir
from mlxpy.rundir.status import RunStatus

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
    "error": "{type: str, message: str, rank: int (distributed runs)}: why the run failed",
    "exit_code": "int: the code of sys.exit(n) that ended the task",
    "interrupt_reason": "str: the signal name",
    "restarts": "int: how many times the run was resumed",
    "history": "list[dict]: earlier attempts (start_time, end_time, status, hostname, pid, ...)",
    "requeued": "bool: the scheduler was asked to start it again",
    "scheduler": "dict: name, settings (dict: the scheduler's constructor settings), script, "
    "job_id, array_script, ... (set at submission)",
    "submit_time": "str",
    "version_manager": "dict: commit, dirty, snapshot dir ...",
    "sweep_id": "str: the sweep the run is a point of (its record: <parent>/.sweeps/<id>/)",
    "sweep_point": "int: the point's index in its sweep's manifest",
    "world_size": "int: the number of processes of a distributed run (absent for one)",
    "distributed": "dict: launcher (torchelastic, env, openmpi, pmi, slurm), key (the job "
    "identity its ranks joined under)",
    "failed_rank": "int: in a distributed run, the rank whose failure is the run's",
    "config_dir": "str: the config dir the launch read (config.yaml, mlxpy.yaml), for reruns",
    "rerun_of": "str: the uid of the run this one re-runs (mlxpy rerun)",
}
#: in ``ctx.info`` only: each process has its own, so the run's files hold neither
PROCESS_KEYS = ("rank", "local_rank")
#: set when the run dir is claimed or submitted, and kept by every later attempt
KEPT_ON_RESUME = (
    "uid",
    "scheduler",
    "submit_time",
    "launch_id",
    "sweep_id",
    "sweep_point",
    "rerun_of",
)
#: what one earlier attempt keeps in ``history``
ATTEMPT_KEYS = ("start_time", "end_time", "status", "hostname", "pid")


def write_info(root: Path, info: dict[str, Any], config: dict[str, Any]) -> None:
    """Write both info files. Also used outside the run, by ``mlxpy status`` for runs that
    never started."""
    run = RunDir(Path(root))
    if any(key in info for key in PROCESS_KEYS) or info.get("world_size") == 1:
        info = {k: v for k, v in info.items() if k not in PROCESS_KEYS}
        if info.get("world_size") == 1:  # one process: the run's files are as they were
            del info["world_size"]
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


# -- what is recorded about each attempt ------------------------------------------------


def now_iso() -> str:
    """Current time, ISO 8601 with the local UTC offset."""
    return iso_time(datetime.now(timezone.utc).timestamp())


def iso_time(timestamp: float) -> str:
    """A POSIX time as the run info writes times: ISO 8601, local offset, milliseconds."""
    return (
        datetime.fromtimestamp(timestamp, timezone.utc)
        .astimezone()
        .isoformat(timespec="milliseconds")
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid still identifies the user
        return str(os.getuid())


#: one id per launch (a sweep shares it), e.g. to group runs in trackers
LAUNCH_ID = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def new_run_info(
    script_path: str, project_dir: str, overrides: list[str], plugin_versions: dict[str, str]
) -> RunInfo:
    from mlxpy._version import __version__

    return RunInfo(
        status=RunStatus.RUNNING.value,
        log_id=None,
        log_dir=None,
        start_time=now_iso(),
        end_time=None,
        duration_s=None,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        user=_user(),
        python_executable=sys.executable,
        python_version=sys.version.split()[0],
        command=shlex.join([sys.executable, *sys.argv]),
        argv=list(sys.argv),
        overrides=list(overrides),
        cwd=os.getcwd(),
        script_path=script_path,
        project_dir=project_dir,
        mlxpy_version=__version__,
        launch_id=LAUNCH_ID,
        plugins=dict(plugin_versions),
    )


def finish(info: RunInfo, status: str, started: float, ended: float) -> None:
    info.status = str(status)
    info.end_time = now_iso()
    info.duration_s = round(ended - started, 6)


def safe_text(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes, e.g. from a file name) spelled out as
    ``\\udcff``: YAML, JSON and UTF-8 files refuse them, and a run's record must not fail."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_message(error: BaseException) -> str:
    """``str(error)``, safe to store; an exception whose ``__str__`` raises still gets a
    message, so that recording it never fails in its place."""
    try:
        message = str(error)
    except Exception as exc:
        message = f"<str() raised {type(exc).__name__}>"
    return safe_text(message)


def exit_status(error: SystemExit) -> int:
    """The status ``sys.exit(code)`` gives the process, as Python decides it: an int is the
    status, None is 0, anything else (a message) is 1."""
    if error.code is None:
        return 0
    return error.code if isinstance(error.code, int) else 1


def describe_error(info: RunInfo, error: BaseException) -> str:
    """Record the error in ``info``; return the full traceback text for the run dir. Both
    are safe to write, whatever the exception's message holds."""
    info.error = {"type": safe_text(type(error).__name__), "message": error_message(error)}
    try:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception as exc:  # a broken exception must still leave its record
        summary = f"{info.error['type']}: {info.error['message']}"
        text = f"{summary}\n(no traceback: formatting it raised {type(exc).__name__})\n"
    return safe_text(text)
