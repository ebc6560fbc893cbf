"""``mlxpy status`` and ``mlxpy cancel``: what the schedulers say of submitted runs, asked in
one call per scheduler (never one per job)."""

from __future__ import annotations

import json
import numbers
import re
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError
from mlxpy.rundir.status import LIVE, RunStatus
from mlxpy.scheduling.base import JobPhase, JobState, Scheduler

LIVE_RUN = {str(s) for s in LIVE}
#: the flattened columns of a run's recorded scheduler settings (``info.scheduler.settings``)
SETTINGS_COLUMN = "info.scheduler.settings"


#: a job id any scheduler may be handed: no separators, spaces or option-like dash; a
#: scheduler class narrows it with its own ``job_id_pattern`` (a regular expression)
JOB_ID = re.compile(r"[A-Za-z0-9_.\[\]][A-Za-z0-9_.\-\[\]]{0,199}")


class UnknownSchedulerError(MlxpyError):
    """A run names a scheduler that no installed plugin registers; it is never imported."""


class InvalidJobIdError(MlxpyError):
    """A run's recorded job id is not one its scheduler could have given."""


class SchedulerSettingsError(MlxpyError):
    """A run's recorded ``info.scheduler.settings`` do not fit its scheduler's constructor."""


def scheduler_class(name: Any) -> type[Scheduler]:
    """The scheduler registered under ``name`` by an installed plugin. A run's info is data
    from a shared dir: a dotted class path there is never imported."""
    from mlxpy.plugins import get_plugins

    registry = get_plugins()
    if not isinstance(name, str) or name not in registry.available("scheduler"):
        known = ", ".join(registry.available("scheduler"))
        raise UnknownSchedulerError(
            f"scheduler {name!r} is not registered by an installed plugin (installed: {known}); "
            "not imported"
        )
    return registry.resolve("scheduler", name, where="info.scheduler.name of a run")


def _recorded_settings(row: Any, has_settings: bool) -> Any:
    """The run's ``info.scheduler.settings`` as submission recorded them (read from its info
    file, so lists and nested values come back as written); None for a run that has none
    (written before settings were recorded): its scheduler gets its defaults."""
    if not has_settings:
        return None
    from mlxpy.rundir.info import read_info

    info = read_info(Path(row["log_dir"])) or {}
    recorded = info.get("scheduler")
    return recorded.get("settings") if isinstance(recorded, dict) else None


def build_scheduler(cls: type[Scheduler], settings: Any, where: str) -> Scheduler:
    """``cls`` built with a run's recorded settings, validated as ``mlxpy.yaml``'s are (an
    unknown key or a wrong type is refused); its defaults when none were recorded."""
    from mlxpy.errors import OptionsError
    from mlxpy.plugins.component import build_component

    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise SchedulerSettingsError(
            f"{where}: info.scheduler.settings must be a mapping, got {type(settings).__name__}"
        )
    try:
        return build_component(cls, "scheduler", settings, lambda key: where)
    except (OptionsError, TypeError, ValueError) as exc:
        raise SchedulerSettingsError(f"{where}: info.scheduler.settings: {exc}") from None


def _settings_key(settings: Any) -> str:
    """Runs with equal settings share one scheduler (and one call to it)."""
    return json.dumps(settings, sort_keys=True, default=repr)


def check_job_id(scheduler: type[Scheduler], job_id: Any) -> str:
    """``job_id`` if it is a valid id for ``scheduler`` (see :data:`JOB_ID`)."""
    pattern = scheduler.job_id_pattern
    text = job_id if isinstance(job_id, str) else str(job_id)
    if (
        isinstance(job_id, (str, numbers.Integral))
        and not isinstance(job_id, bool)
        and JOB_ID.fullmatch(text)
        and (pattern is None or re.fullmatch(pattern, text))
    ):
        return text
    raise InvalidJobIdError(
        f"invalid job id {text[:60]!r} for {scheduler.name}: not passed to the scheduler"
    )


def _runs(parent: str, query: str) -> Any:
    from mlxpy.reading.reader import Reader

    runs = Reader(parent).filter(query)
    if "info.scheduler.job_id" not in runs.columns:
        return runs.iloc[0:0]
    return runs[runs["info.scheduler.job_id"].notna()]


def _schedulers(runs: Any) -> tuple[dict[tuple, tuple[Scheduler, list]], list[dict]]:
    """The runs grouped by the scheduler that submitted them, each group with that scheduler
    built from its recorded name and settings, and each valid job id; plus the rows of runs
    whose scheduler cannot be asked (unknown name, bad settings, invalid job id) and why.

    A run's settings are read from its info file once per distinct flattened form (the
    runs of a sweep share theirs): a status of N runs reads a few files, not N."""
    columns = [c for c in runs.columns if str(c).startswith(SETTINGS_COLUMN)]
    has_settings = bool(columns)
    read: dict[tuple, Any] = {}
    groups: dict[tuple, tuple[Scheduler, list]] = {}
    unasked = []
    for log_id, row in runs.iterrows():
        name = row["info.scheduler.name"]
        try:
            cls = scheduler_class(name)
            flat = (name, *(repr(row[c]) for c in columns))
            if flat not in read:
                read[flat] = _recorded_settings(row, has_settings)
            settings = read[flat]
            key = (name, _settings_key(settings))
            if key not in groups:
                scheduler = build_scheduler(cls, settings, f"run {log_id}")
                groups[key] = (scheduler, [])
            job_id = check_job_id(cls, row["info.scheduler.job_id"])
        except UnknownSchedulerError as exc:
            unasked.append(_unasked(log_id, row, "(unknown scheduler)", exc))
            continue
        except SchedulerSettingsError as exc:
            unasked.append(_unasked(log_id, row, "(bad settings)", exc))
            continue
        except InvalidJobIdError as exc:
            unasked.append(_unasked(log_id, row, "(invalid job id)", exc))
            continue
        groups[key][1].append((log_id, row, job_id))
    return groups, unasked


def reconcile(run_status: str, state: JobState | None) -> str:
    """A run's status from its own record and its job's :class:`JobPhase`: a live run whose
    job is over ended without saying so (CANCELLED when a user cancelled the job, else
    FAILED); a run whose job waits to start again is REQUEUED."""
    if state is None:
        return run_status
    if state.phase is JobPhase.DONE and run_status in LIVE_RUN:
        return (RunStatus.CANCELLED if state.cancelled else RunStatus.FAILED).value
    if state.phase is JobPhase.QUEUED and (run_status not in LIVE_RUN or state.current_job_id):
        return RunStatus.REQUEUED.value  # an attempt ended (TIMEOUT, killed...); its job waits
    return run_status


def collect(parent: str, query: str = "") -> list[dict[str, Any]]:
    """One row per submitted run: its own status, the scheduler's, and the reconciled one.

    A run still SUBMITTED whose job is over never started (cancelled while pending, or the
    job failed before Python ran): its info is updated to say so.
    """
    groups, rows = _schedulers(_runs(parent, query))
    for scheduler, members in groups.values():
        if not members:
            continue
        states = scheduler.statuses([job_id for _, _, job_id in members])
        for log_id, row, job_id in members:
            state = states.get(job_id)
            if state is not None and state.current_job_id:  # resubmitted by the scheduler
                job_id = state.current_job_id
            run_status = row["info.status"]
            status = reconcile(run_status, state)
            if run_status == RunStatus.SUBMITTED and state and state.phase is JobPhase.DONE:
                mark_never_started(Path(row["log_dir"]), status, state)
            rows.append(
                {
                    "log_id": log_id,
                    "job_id": job_id,
                    "run_status": run_status,
                    "scheduler_state": state.state if state else "(gone)",
                    "phase": state.phase.value if state else None,
                    "exit_code": state.exit_code if state else None,
                    "status": status,
                    "reason": state.reason if state else None,
                }
            )
    return sorted(rows, key=lambda r: r["log_id"])


def _unasked(log_id: Any, row: Any, state: str, why: Exception) -> dict[str, Any]:
    """The row of a run whose scheduler is not asked: the run's own status, and why."""
    return {
        "log_id": log_id,
        "job_id": str(row["info.scheduler.job_id"])[:60],
        "run_status": row["info.status"],
        "scheduler_state": state,
        "phase": None,
        "exit_code": None,
        "status": row["info.status"],
        "reason": str(why),
    }


def mark_never_started(log_dir: Path, status: str, state: Any) -> None:
    """Record that a run still SUBMITTED never started: its job is over (``status``, with
    the scheduler's ``state`` as the reason), so that it reads as ended, and resumable."""
    from mlxpy.rundir.info import read_yaml, write_info
    from mlxpy.rundir.layout import RunDir

    run = RunDir(log_dir)
    info = read_yaml(run.info, run.root) or {}
    if info.get("status") != RunStatus.SUBMITTED:  # it started meanwhile: its process decides
        return
    info["status"] = status
    info["error"] = {
        "type": "JobEnded",
        "message": f"the scheduler ended the job before the run started ({state.state}"
        + (f": {state.reason})" if state.reason else ")"),
    }
    write_info(log_dir, info, read_yaml(run.config, run.root) or {})


def cancel(parent: str, log_ids: list[str]) -> list[tuple[str, str]]:
    """Cancel the jobs of the given runs, one call per scheduler. Every run's scheduler,
    settings and job id are checked first; if one is wrong, nothing is cancelled."""
    runs = _runs(parent, "")
    wanted = {str(i) for i in log_ids}
    missing = wanted - {str(i) for i in runs.index}
    if missing:
        raise MlxpyError(f"no submitted run with id {', '.join(sorted(missing))} in {parent}")
    groups, unasked = _schedulers(runs[[str(i) in wanted for i in runs.index]])
    if unasked:
        problems = [f"run {row['log_id']}: {row['reason']}" for row in unasked]
        raise MlxpyError("nothing cancelled: " + "; ".join(problems))
    done = []
    for scheduler, members in groups.values():
        if members:
            scheduler.cancel([job_id for _, _, job_id in members])
            done += [(str(log_id), job_id) for log_id, _, job_id in members]
    return sorted(done, key=lambda pair: _natural_id(pair[0]))


def _natural_id(log_id: str) -> tuple[int, str]:
    return (int(log_id), "") if log_id.isdigit() else (0, log_id)
