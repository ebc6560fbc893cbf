"""The launch record: every fact a launch hands to the processes that run its jobs, in one
typed file whose path is the only thing they are given (the ``MLXPY_LAUNCH`` variable).

A launch that runs from a version manager's snapshot writes one record beside the snapshots
and re-executes itself from the copy; a submission writes one per run, in the run dir, and the
job script exports its path. The record, not the command line or ``mlxpy.yaml`` read again,
says where the configs are, which run dir the job was given and which scheduler, with which
settings, submitted it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError
from mlxpy.rundir.atomic import atomic_write_text
from mlxpy.rundir.layout import is_run_id
from mlxpy.sweeping.manifest import SWEEP_ID

ENV_VAR = "MLXPY_LAUNCH"
#: bumped when a field changes meaning; a job refuses a record of another format
RECORD_FORMAT = 1


class LaunchRecordError(MlxpyError):
    """The launch record a job was started with is missing, unreadable or malformed."""


@dataclass(frozen=True)
class SchedulerChoice:
    """The scheduler that submitted a job: its selector as written in ``mlxpy.yaml`` (a
    registered name or a dotted class path) and its constructor's settings."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)

    def build(self, where: str) -> Any:
        """The scheduler, as the submitting process built it."""
        from mlxpy.plugins import get_plugins
        from mlxpy.plugins.component import build_component

        cls = get_plugins().resolve("scheduler", self.name, where=f"{where}: scheduler.name")
        return build_component(cls, "scheduler", dict(self.settings), lambda key: where)


@dataclass(frozen=True)
class RunClaim:
    """A run dir claimed at submission (status SUBMITTED) for one job to start, or to start
    again when its scheduler requeues it."""

    log_id: int
    log_dir: str  # absolute


@dataclass(frozen=True)
class LaunchRecord:
    """What a job's process cannot know by itself. ``config_dir`` is the one the jobs read
    (see :func:`mlxpy.launching.relaunch.config_dir_for_jobs`); ``argv`` is the command the
    user typed; ``version_manager`` and ``run_files`` are the version manager's info and the
    files it keeps in each run; ``scheduler`` and ``claim`` are set in a submitted job's
    record, and ``sweep_id``/``sweep_point`` when that job is a point of a sweep;
    ``sweep_worker`` (the sweep id) in the record of an adaptive sweep's workers, which claim
    no run in advance but one per trial (:mod:`mlxpy.sweeping.worker`)."""

    project_dir: str
    config_dir: str
    argv: list[str]
    version_manager: dict[str, Any] | None = None
    run_files: dict[str, str] = field(default_factory=dict)
    scheduler: SchedulerChoice | None = None
    claim: RunClaim | None = None
    sweep_worker: str | None = None
    sweep_id: str | None = None
    sweep_point: int | None = None

    def for_job(
        self,
        scheduler: SchedulerChoice,
        claim: RunClaim,
        sweep_id: str | None = None,
        sweep_point: int | None = None,
    ) -> LaunchRecord:
        """The record of one submitted job. Its run files are not repeated in it: the
        submission writes them into the claimed run dir."""
        return replace(
            self,
            run_files={},
            scheduler=scheduler,
            claim=claim,
            sweep_id=sweep_id,
            sweep_point=sweep_point,
        )

    def write(self, path: Path) -> Path:
        data = {"format": RECORD_FORMAT, **asdict(self)}
        atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> LaunchRecord:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LaunchRecordError(
                f"cannot read the launch record {path} (named by {ENV_VAR}): {exc}. It is "
                "written when a launch is submitted or re-run from a snapshot; launch again"
            ) from None
        try:
            return _parse(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise LaunchRecordError(
                f"the launch record {path} (named by {ENV_VAR}) is malformed ({exc}); it was "
                "written by another mlxpy version or altered: launch again"
            ) from None


def _parse(data: Any) -> LaunchRecord:
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"format {found!r}, expected {RECORD_FORMAT}")
    strings = {key: data[key] for key in ("project_dir", "config_dir")}
    if not all(isinstance(value, str) and value for value in strings.values()):
        raise ValueError("project_dir and config_dir must be paths")
    argv = data["argv"]
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a list of strings")
    run_files = data.get("run_files") or {}
    if not isinstance(run_files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in run_files.items()
    ):
        raise ValueError("run_files must map names to texts")
    version_manager = data.get("version_manager")
    if version_manager is not None and not isinstance(version_manager, dict):
        raise ValueError("version_manager must be a mapping")
    scheduler = None
    if data.get("scheduler") is not None:
        name, settings = data["scheduler"]["name"], data["scheduler"].get("settings") or {}
        if not isinstance(name, str) or not isinstance(settings, dict):
            raise ValueError("scheduler needs a name and a mapping of settings")
        scheduler = SchedulerChoice(name, settings)
    claim = None
    if data.get("claim") is not None:
        log_id, log_dir = data["claim"]["log_id"], data["claim"]["log_dir"]
        if (
            type(log_id) is not int
            or not isinstance(log_dir, str)
            or not os.path.isabs(log_dir)
            or not is_run_id(Path(log_dir).name)
            or int(Path(log_dir).name) != log_id
        ):
            raise ValueError("claim must name a run dir by its absolute path and its id")
        claim = RunClaim(log_id, log_dir)
    sweep_worker = data.get("sweep_worker")
    if sweep_worker is not None and not (
        isinstance(sweep_worker, str) and SWEEP_ID.fullmatch(sweep_worker)
    ):
        raise ValueError("sweep_worker must be a sweep id")
    sweep_id, sweep_point = data.get("sweep_id"), data.get("sweep_point")
    if (sweep_id is None) != (sweep_point is None):
        raise ValueError("sweep_id and sweep_point are set together or not at all")
    if sweep_id is not None and not (isinstance(sweep_id, str) and SWEEP_ID.fullmatch(sweep_id)):
        raise ValueError("sweep_id is not a sweep id")
    if sweep_point is not None and (type(sweep_point) is not int or sweep_point < 0):
        raise ValueError("sweep_point must be a point index (an int >= 0)")
    return LaunchRecord(
        project_dir=strings["project_dir"],
        config_dir=strings["config_dir"],
        argv=list(argv),
        version_manager=version_manager,
        run_files=dict(run_files),
        scheduler=scheduler,
        claim=claim,
        sweep_worker=sweep_worker,
        sweep_id=sweep_id,
        sweep_point=sweep_point,
    )


def take_launch_record() -> LaunchRecord | None:
    """The record this process was started with, or None for a launch typed by the user. The
    variable is removed, so that processes the task starts do not inherit it."""
    path = os.environ.pop(ENV_VAR, None)
    return LaunchRecord.read(Path(path)) if path else None
