"""``mlxpy status`` and ``mlxpy cancel``: what the schedulers say of submitted runs, asked in
one call per scheduler (never one per job)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError
from mlxpy.rundir.status import LIVE, RunStatus

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


def _scheduler(name: str) -> Any:
    from mlxpy.plugins import get_plugins

    return get_plugins().resolve("scheduler", name, where="info.scheduler.name of a run")()


def _runs(parent: str, query: str) -> Any:
    from mlxpy.reader import Reader

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
    by_scheduler: dict[str, list[Any]] = defaultdict(list)
    for log_id, row in runs.iterrows():
        by_scheduler[row["info.scheduler.name"]].append((log_id, row))
    rows = []
    for name, members in by_scheduler.items():
        states = _scheduler(name).statuses([str(r["info.scheduler.job_id"]) for _, r in members])
        for log_id, row in members:
            job_id = str(row["info.scheduler.job_id"])
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
    return rows


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
    """Cancel the jobs of the given runs, one call per scheduler."""
    runs = _runs(parent, "")
    wanted = {str(i) for i in log_ids}
    missing = wanted - {str(i) for i in runs.index}
    if missing:
        raise MlxpyError(f"no submitted run with id {', '.join(sorted(missing))} in {parent}")
    by_scheduler: dict[str, list[str]] = defaultdict(list)
    done = []
    for log_id, row in runs.iterrows():
        if str(log_id) in wanted:
            by_scheduler[row["info.scheduler.name"]].append(str(row["info.scheduler.job_id"]))
            done.append((str(log_id), str(row["info.scheduler.job_id"])))
    for name, job_ids in by_scheduler.items():
        _scheduler(name).cancel(job_ids)
    return done
