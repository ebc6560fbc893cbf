"""``mlxpy status`` and ``mlxpy cancel``: what the schedulers say of submitted runs, asked in
one call per scheduler (never one per job)."""

from __future__ import annotations

import numbers
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError
from mlxpy.rundir.status import LIVE, RunStatus
from mlxpy.scheduling.base import Scheduler

#: scheduler states meaning the job is over, whatever the scheduler
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "Terminated",
    "Error",
}
LIVE_RUN = {str(s) for s in LIVE}
#: scheduler states of a job waiting to (re)start
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "Waiting", "Hold", "toLaunch", "Launching"}


#: a job id any scheduler may be handed: no separators, spaces or option-like dash; a
#: scheduler class narrows it with its own ``job_id_pattern`` (a regular expression)
JOB_ID = re.compile(r"[A-Za-z0-9_.\[\]][A-Za-z0-9_.\-\[\]]{0,199}")


class UnknownSchedulerError(MlxpyError):
    """A run names a scheduler that no installed plugin registers; it is never imported."""


class InvalidJobIdError(MlxpyError):
    """A run's recorded job id is not one its scheduler could have given."""


def _scheduler_class(name: Any) -> type[Scheduler]:
    """The scheduler registered under ``name`` by an installed plugin. A run's info is data
    from a shared dir: a dotted class path there is never imported."""
    from mlxpy.plugins import get_plugins

    registry = get_plugins()
    if not isinstance(name, str) or name not in registry.available("scheduler"):
        known = ", ".join(registry.available("scheduler"))
        raise UnknownSchedulerError(
            f"scheduler {name!r} is not registered by an installed plugin (known: {known}); "
            "not imported"
        )
    return registry.resolve("scheduler", name, where="info.scheduler.name of a run")


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


def collect(parent: str, query: str = "") -> list[dict[str, Any]]:
    """One row per submitted run: its own status, the scheduler's, and the reconciled one.

    A run still SUBMITTED whose job is over never started (cancelled while pending, or the
    job failed before Python ran): its info is updated to say so.
    """
    runs = _runs(parent, query)
    by_scheduler: dict[Any, list[Any]] = defaultdict(list)
    for log_id, row in runs.iterrows():
        by_scheduler[_hashable(row["info.scheduler.name"])].append((log_id, row))
    rows = []
    for name, members in by_scheduler.items():
        try:
            cls = _scheduler_class(name)
        except UnknownSchedulerError as exc:
            rows += [_unasked(log_id, row, "(unknown scheduler)", exc) for log_id, row in members]
            continue
        valid = []
        for log_id, row in members:
            try:
                valid.append((log_id, row, check_job_id(cls, row["info.scheduler.job_id"])))
            except InvalidJobIdError as exc:
                rows.append(_unasked(log_id, row, "(invalid job id)", exc))
        if not valid:
            continue
        states = cls().statuses([job_id for _, _, job_id in valid])
        for log_id, row, job_id in valid:
            state = states.get(job_id)
            if state is not None and state.current_job_id:  # resubmitted by the scheduler
                job_id = state.current_job_id
            run_status = row["info.status"]
            status = run_status
            if state is not None and state.state in TERMINAL and run_status in LIVE_RUN:
                cancelled = state.cancelled or state.state == "CANCELLED"  # SLURM's word
                status = (RunStatus.CANCELLED if cancelled else RunStatus.FAILED).value
                if run_status == RunStatus.SUBMITTED:
                    _mark_never_started(Path(row["log_dir"]), status, state)
            elif (
                state is not None
                and state.state in QUEUED
                and (run_status not in LIVE_RUN or state.current_job_id)
            ):
                status = (
                    RunStatus.REQUEUED.value
                )  # an attempt ended (TIMEOUT, killed...); its job waits again
            rows.append(
                {
                    "log_id": log_id,
                    "job_id": job_id,
                    "run_status": run_status,
                    "scheduler_state": state.state if state else "(gone)",
                    "exit_code": state.exit_code if state else None,
                    "status": status,
                    "reason": state.reason if state else None,
                }
            )
    return sorted(rows, key=lambda r: r["log_id"])


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, type(None))) else repr(value)


def _unasked(log_id: Any, row: Any, state: str, why: Exception) -> dict[str, Any]:
    """The row of a run whose scheduler is not asked: the run's own status, and why."""
    return {
        "log_id": log_id,
        "job_id": str(row["info.scheduler.job_id"])[:60],
        "run_status": row["info.status"],
        "scheduler_state": state,
        "exit_code": None,
        "status": row["info.status"],
        "reason": str(why),
    }


def _mark_never_started(log_dir: Path, status: str, state: Any) -> None:
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
    """Cancel the jobs of the given runs, one call per scheduler. Every run's scheduler and
    job id are checked first; if one is wrong, nothing is cancelled."""
    runs = _runs(parent, "")
    wanted = {str(i) for i in log_ids}
    missing = wanted - {str(i) for i in runs.index}
    if missing:
        raise MlxpyError(f"no submitted run with id {', '.join(sorted(missing))} in {parent}")
    by_scheduler: dict[Any, tuple[type, list[str]]] = {}
    done, problems = [], []
    for log_id, row in runs.iterrows():
        if str(log_id) not in wanted:
            continue
        name = row["info.scheduler.name"]
        try:
            cls = _scheduler_class(name)
            job_id = check_job_id(cls, row["info.scheduler.job_id"])
        except (UnknownSchedulerError, InvalidJobIdError) as exc:
            problems.append(f"run {log_id}: {exc}")
            continue
        by_scheduler.setdefault(name, (cls, []))[1].append(job_id)
        done.append((str(log_id), job_id))
    if problems:
        raise MlxpyError("nothing cancelled: " + "; ".join(problems))
    for cls, job_ids in by_scheduler.values():
        cls().cancel(job_ids)
    return done
