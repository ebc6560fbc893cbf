"""Submitting a launch's jobs to a scheduler: claim each run dir (status SUBMITTED), write its
metadata, its launch record and ``script.sh``, submit (one array or one job each), record the
job ids, return.

A job's command is the script with the job's own overrides, nothing added: what mlxpy tells
the job (its claimed run dir, the scheduler and its settings, where the configs are) is in
the run's launch record, whose path the script exports (:mod:`mlxpy.launching.record`).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError, MlxpyWarning
from mlxpy.launching.record import ENV_VAR, LaunchRecord, RunClaim, SchedulerChoice
from mlxpy.rundir.atomic import atomic_write_text
from mlxpy.rundir.info import now_iso
from mlxpy.rundir.layout import RunDir
from mlxpy.rundir.logger import Logger
from mlxpy.rundir.status import RunStatus
from mlxpy.scheduling import job_script
from mlxpy.scheduling.base import ScheduledJob, Scheduler, SubmissionError
from mlxpy.sweeping.manifest import JournalEntry, append_journal

SUBMITTED = RunStatus.SUBMITTED.value
SUBMIT_FAILED = RunStatus.SUBMIT_FAILED.value


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Submission:
    """The jobs of one launch, prepared and submitted together."""

    def __init__(
        self,
        runs: Sequence[Any],
        scheduler: Scheduler,
        choice: SchedulerChoice,
        script: Path,
        workdir: Path,
        record: LaunchRecord,
        use_arrays: bool,
        max_running: int = 0,
        pack: int = 1,
    ) -> None:
        self.runs = list(runs)  # mlxpy.launching.runner.Run objects, one per job
        self.scheduler = scheduler
        self.choice = choice  # how ``scheduler`` was selected and built, for its jobs
        self.script = script
        self.workdir = workdir
        self.record = record
        self.use_arrays = use_arrays
        self.max_running = max_running  # at most this many of the jobs run at once (0: any)
        self.pack = max(1, pack)  # runs per scheduler job, one after another
        self.jobs: list[ScheduledJob] = []
        self._index: dict[int, int] = {}  # id of each job -> its run's index

    def prepare(self) -> None:
        """Claim each run dir and write its metadata and script; nothing is submitted. What
        cannot work is refused before anything is claimed; a failure half-way marks the runs
        already claimed SUBMIT_FAILED (never left looking alive)."""
        if not self.scheduler.can_submit():
            self.scheduler.submit(self.script)  # raises the explanation
        for run in self.runs:
            self._check_logger(run.job.logger)
        try:
            for run in self.runs:
                self._prepare_one(run)
        except Exception as exc:
            self._fail_unsubmitted(exc)
            raise

    @staticmethod
    def _check_logger(logger: Any) -> None:
        if logger is None:
            raise MlxpyError(
                "submitting jobs needs a logger that can claim run dirs in advance "
                "(DefaultLogger or a subclass); use_logger must be true"
            )
        # the base methods refuse, naming the logger and the fix
        if type(logger).prepare_submission is Logger.prepare_submission:
            logger.prepare_submission(None)
        if type(logger).adopt_claim is Logger.adopt_claim:
            logger.adopt_claim("")

    def _prepare_one(self, run: Any) -> None:
        logger = run.job.logger
        run.info.status = SUBMITTED
        run.info.submit_time = now_iso()
        logger.prepare_submission(run.ctx)
        for name, text in self.record.run_files.items():  # kept in the run from now on
            logger.save_metadata_text(name, text)
        run_dir = RunDir(Path(run.info.log_dir))
        claim = RunClaim(run.info.log_id, str(run_dir.root))
        sweep_id, point = run.info.get("sweep_id"), run.info.get("sweep_point")
        job_record = self.record.for_job(self.choice, claim, sweep_id, point)
        record_path = job_record.write(run_dir.launch_record)
        command = [sys.executable, str(self.script), *run.job.overrides]
        job = ScheduledJob(
            log_id=run.info.log_id,
            log_dir=run_dir.root,
            overrides=list(run.job.overrides),
            name=f"{self.script.stem}-{run.info.log_id}",
        )
        job.script_path = run_dir.job_script
        env = {ENV_VAR: str(record_path)}
        job.extra.update(command=command, env=env)  # what a packed job runs (job_script)
        text = job_script.run_script(self.scheduler, job, command, self.workdir, env)
        atomic_write_text(job.script_path, text)
        os.chmod(job.script_path, 0o755)
        run.info.scheduler = {
            "name": self.scheduler.name,
            "settings": dict(self.choice.settings),
            "script": str(job.script_path),
        }
        logger.save_info(dict(run.info))
        if sweep_id is not None:  # the point's run dir is claimed (again, for a resume)
            entry = JournalEntry(point, run.info.log_id, run.info.get("uid") or "")
            append_journal(run_dir.root.parent, sweep_id, entry)
        self.jobs.append(job)
        with run.plugins.selected(logger):  # the job's own logger hears its submission
            run.ctx.hook.mlxpy_before_job_submit(job=job)

    def check_limits(self) -> None:
        """Refuse, before any run dir is claimed, a sweep that needs more scheduler jobs than
        the cluster lets this user submit (naming the cap and the fix)."""
        needed = -(-len(self.runs) // self.pack)
        room = self.scheduler.max_submitted_jobs()
        if room is not None and needed > room:
            fit = -(-len(self.runs) // room)
            raise SubmissionError(
                f"this sweep needs {needed} scheduler jobs ({len(self.runs)} runs, "
                f"{self.pack} per job), but {self.scheduler.name} lets you submit only {room} "
                f"more now (the cluster's cap on submitted jobs, less your queued ones). Run "
                f"several points per job with +mlxpy.sweep.pack={fit}, or submit fewer points "
                "at a time"
            )

    def submit(self) -> None:
        """Submit every prepared job; on failure mark the unsubmitted runs SUBMIT_FAILED.
        Every accepted job's id is saved before any ``mlxpy_after_job_submit`` fires, so a
        hook that raises never hides a job the scheduler holds.

        With ``pack`` > 1, each scheduler job runs that many runs one after another. Arrays
        are split at the scheduler's :meth:`~Scheduler.max_array_size`. With
        ``max_running``, arrays are throttled and each waits for the one before, so the
        limit holds across them; without arrays, the jobs form ``max_running`` chains, each
        job waiting for the one before it in its chain."""
        self._index = {id(job): number for number, job in enumerate(self.jobs)}
        try:
            units = self._pack_units() if self.pack > 1 else [(j, [j]) for j in self.jobs]
            limit = self.scheduler.max_array_size() if self.use_arrays else 0
            if limit > 0 and len(units) >= 2:
                self._submit_arrays(units, limit)
            else:
                self._submit_singles(units)
        except Exception as exc:
            self._fail_unsubmitted(exc)
            try:
                self._announce()
            except Exception as hook_error:  # the submission's failure is what to report
                warnings.warn(
                    f"mlxpy_after_job_submit also failed: {hook_error!r}", MlxpyWarning, 2
                )
            raise
        self._announce()

    def _throttle_refused(self, how: str) -> SubmissionError:
        return SubmissionError(
            f"{self.scheduler.name} cannot limit the running jobs of a sweep {how} "
            f"(sweep.max_running={self.max_running}); remove +mlxpy.sweep.max_running, or "
            "use a scheduler that can (see its README)"
        )

    def _submit_arrays(
        self, units: list[tuple[ScheduledJob, list[ScheduledJob]]], limit: int
    ) -> None:
        throttled = 0 < self.max_running < len(units)
        if throttled and not self.scheduler.can_throttle_arrays:
            if not self.scheduler.can_wait_for_jobs:
                raise self._throttle_refused("in arrays")
            self._submit_singles(units)
            return
        after: list[str] = []
        for chunk in _chunks(units, limit):
            kwargs: dict[str, Any] = {}
            if throttled:
                kwargs = {"max_running": self.max_running, "after": after}
            ids = self._submit_array(chunk, **kwargs)
            after = ids

    def _submit_singles(self, units: list[tuple[ScheduledJob, list[ScheduledJob]]]) -> None:
        chains = self.max_running if 0 < self.max_running < len(units) else 0
        if chains and not self.scheduler.can_wait_for_jobs:
            raise self._throttle_refused("without arrays")
        ids: list[str] = []
        waiting: Any = self.scheduler  # its submit takes ``after`` (can_wait_for_jobs)
        for number, (unit, members) in enumerate(units):
            assert unit.script_path is not None
            if chains and number >= chains:
                job_id = waiting.submit(unit.script_path, after=[ids[number - chains]])
            else:
                job_id = self.scheduler.submit(unit.script_path)
            ids.append(job_id)
            script = str(unit.script_path) if unit is not members[0] else None
            for job in members:
                self._record(job, job_id, None, pack_script=script)

    def _pack_units(self) -> list[tuple[ScheduledJob, list[ScheduledJob]]]:
        """Group the jobs ``pack`` at a time, each group one job running them in turn."""
        first = self.jobs[0]
        parent = first.log_dir.parent / ".mlxpy-packs"
        parent.mkdir(exist_ok=True)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        units = []
        for number, members in enumerate(_chunks(self.jobs, self.pack)):
            base = parent / f"{stamp}-{number}"
            script = base.with_suffix(".sh")
            unit = ScheduledJob(
                log_id=None,
                log_dir=parent,
                overrides=[],
                name=f"{self.script.stem}-{members[0].log_id}-{members[-1].log_id}",
                script_path=script,
                extra={"pack": [m.log_id for m in members], "stdout": f"{base}.out"},
            )
            text = job_script.pack_script(
                self.scheduler, unit, members, self.workdir, base.with_suffix(".done")
            )
            atomic_write_text(script, text)
            os.chmod(script, 0o755)
            units.append((unit, members))
        return units

    def _fail_unsubmitted(self, exc: BaseException) -> None:
        """Mark every claimed run that has no job id SUBMIT_FAILED, with the reason."""
        for run in self.runs:
            info = run.info
            if info.get("status") != SUBMITTED or not info.get("log_dir"):
                continue  # not claimed yet
            if (info.get("scheduler") or {}).get("job_id") is not None:
                continue  # the scheduler holds it
            info.status = SUBMIT_FAILED
            info.error = {"type": type(exc).__name__, "message": str(exc)}
            try:
                run.job.logger.save_info(dict(info))
            except OSError:  # the disk that failed the submission may fail this too
                pass

    def _announce(self) -> None:
        for run, job in zip(self.runs, self.jobs, strict=False):
            if job.job_id is not None:
                with run.plugins.selected(run.job.logger):
                    run.ctx.hook.mlxpy_after_job_submit(job=job, job_id=job.job_id)

    def _submit_array(
        self, units: list[tuple[ScheduledJob, list[ScheduledJob]]], **kwargs: Any
    ) -> list[str]:
        """One array whose task ``i`` runs ``units[i]`` (a run, or a pack of runs); every
        run gets its task's id. ``kwargs``: the scheduler's throttle and dependency."""
        first, last = units[0][1][0], units[-1][1][-1]
        parent = first.log_dir.parent / ".mlxpy-arrays"
        parent.mkdir(exist_ok=True)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        array_job = ScheduledJob(
            log_id=None,
            log_dir=parent,
            overrides=[],
            name=f"{self.script.stem}-{first.log_id}-{last.log_id}",
            extra={"array": True, "stdout": str(parent / f"{stamp}.%a.out")},
        )
        path = parent / f"{stamp}.sh"
        text = job_script.array_script(self.scheduler, array_job, [unit for unit, _ in units])
        atomic_write_text(path, text)
        os.chmod(path, 0o755)
        ids = self.scheduler.submit_array(path, len(units), array_job, **kwargs)
        for (unit, members), job_id in zip(units, ids, strict=True):
            script = str(unit.script_path) if unit is not members[0] else None
            for job in members:
                self._record(job, job_id, str(path), pack_script=script)
        return ids

    def _record(
        self,
        job: ScheduledJob,
        job_id: str,
        array_script: str | None,
        pack_script: str | None = None,
    ) -> None:
        job.job_id = job_id
        run = self.runs[self._index[id(job)]]
        run.info.scheduler["job_id"] = job_id
        if array_script:
            run.info.scheduler["array_script"] = array_script
        if pack_script:
            run.info.scheduler["pack_script"] = pack_script
        run.job.logger.save_info(dict(run.info))

    def table(self) -> str:
        rows = [("log_id", "job_id", "overrides")]
        rows += [(str(j.log_id), j.job_id or "-", " ".join(j.overrides)) for j in self.jobs]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}" for r in rows)
