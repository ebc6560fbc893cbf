"""OARScheduler: ``#OAR`` job scripts, ``oarsub -S``, array jobs, one batched ``oarstat``,
``oardel``, and the checkpoint signal before the walltime, with OAR's idempotent
resubmission."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import mlxpy
from mlxpy import JobPhase, JobState, RunStatus, ScheduledJob, Scheduler, SubmissionError

_JOB_ID = re.compile(r"^OAR_JOB_ID=(-?\d+)\s*$", re.M)
# "Resubmiting job 2 => 3 (...)" after exit code 99; "... (new id = 5)" after a preemption
_RESUBMITTED_AS = re.compile(r"(?:=>|new id =)\s*(\d+)")
_EVENT_SOURCE = re.compile(r"^\[[^\]]*\]\s*")  # "[bipbip 15] " before a description
#: events every ended job has, which say nothing of why it ended
_ROUTINE_EVENTS = {"SWITCH_INTO_TERMINATE_STATE", "SWITCH_INTO_ERROR_STATE"}
#: OAR resubmits an idempotent job that exits with 99 only when it ran longer than this
#: (NodeChangeState in OAR 2.5)
OAR_MIN_RUN_S = 60
_MARGIN_S = 2
#: the most a job may take from OAR's start time to Python running it
_STARTUP_MARGIN_S = 10
#: OAR 2.5's job states and what each means (``Terminated`` is not success: the exit code
#: tells); a state not listed here counts as RUNNING
PHASES: dict[str, JobPhase] = {
    **dict.fromkeys(
        ("Waiting", "Hold", "toLaunch", "Launching", "toAckReservation"),
        JobPhase.QUEUED,
    ),
    **dict.fromkeys(("Running", "Suspended", "Resuming", "Finishing"), JobPhase.RUNNING),
    **dict.fromkeys(("Terminated", "Error"), JobPhase.DONE),
}

_NAME = "mlxpy names each job after its run"
_OUTPUT = "mlxpy writes each job's output into its run dir (job.stdout, job.stderr)"
_ARRAY = "mlxpy submits a sweep as one array itself (scheduler.use_arrays)"
#: the ``#OAR`` options :meth:`OARScheduler.directives` and array submission set, and why
RESERVED: dict[str, str] = {
    "-n": _NAME,
    "--name": _NAME,
    "-O": _OUTPUT,
    "--stdout": _OUTPUT,
    "-E": _OUTPUT,
    "--stderr": _OUTPUT,
    "--array": _ARRAY,
    "--array-param-file": _ARRAY,
    "--checkpoint": "mlxpy asks for the walltime signal itself: set scheduler.checkpoint_s instead",
    "--signal": "set scheduler.checkpoint_s instead (mlxpy picks the signal)",
}


def several_resources(option_cmd: Sequence[str]) -> bool:
    """Whether the ``-l`` (``--resource``) requests of raw directives ask for more than one
    resource: a count above 1 (``core=4``, ``nodes=2/core=2``) or ``ALL``/``BEST`` at any
    level. Without ``-l``, OAR gives one resource."""
    words: list[str] = []
    for directive in option_cmd:
        try:
            words += shlex.split(directive)
        except ValueError:
            words += directive.split()
    for number, word in enumerate(words):
        if word in ("-l", "--resource"):
            spec = words[number + 1] if number + 1 < len(words) else ""
        elif word.startswith(("-l", "--resource=")) and not word.startswith("--l"):
            spec = word.removeprefix("--resource=").removeprefix("-l")
        else:
            continue
        resources = spec.split(",")[0]  # then walltime=...
        for count in re.findall(r"=\s*(\w+)", resources):
            if count.upper() in ("ALL", "BEST") or (count.isdigit() and int(count) > 1):
                return True
    return False


class OARScheduler(Scheduler):
    """Submits to OAR. Sweeps go as one array job (``use_arrays``). With
    ``checkpoint_s > 0`` OAR sends SIGUSR2 that long before the walltime; the run records
    TIMEOUT with its logs and checkpoint saved. With ``requeue: true`` the job is of type
    ``idempotent`` and exits with 99, so OAR resubmits it and the new job resumes the
    same run dir; statuses and cancel follow such resubmissions.

    OAR 2.5 cannot throttle an array: a sweep with ``max_running: k`` is submitted as ``k``
    chains of jobs, each job waiting for the one before it in its chain (``oarsub -a``,
    which OAR satisfies once that job is Terminated or in Error): one ``oarsub`` per job.
    ``max_submitted`` caps the jobs one may submit (OAR's own caps live in admission
    rules, which cannot be read).

    OAR starts a job's command once, on the first node of its resources, and gives no
    process a rank: a job of several processes starts them itself (``oarsh``, ``mpirun
    -machinefile $OAR_NODEFILE``, ``torchrun``). With ``rendezvous: true`` (for a job of
    several cores or nodes) the script exports ``MASTER_ADDR`` (the first line of
    ``$OAR_NODEFILE``) and ``MASTER_PORT`` (derived from ``OAR_JOB_ID``) for them."""

    name = "OARScheduler"
    directive_prefix = "#OAR"
    reserved_directives: ClassVar[dict[str, str]] = RESERVED
    array_index_var = "OAR_ARRAY_INDEX"
    array_index_base = 1
    warning_signals: ClassVar[dict[str, str]] = {"SIGUSR2": RunStatus.TIMEOUT.value}
    #: ``mlxpy status``/``cancel`` pass only OAR's integer job ids to oarstat/oardel
    job_id_pattern: ClassVar[str] = r"[0-9]+"
    requeue_exit_code = 99  # with type idempotent, OAR resubmits a job ending so
    can_wait_for_jobs = True

    def __init__(
        self,
        use_arrays: bool = True,
        checkpoint_s: int = 0,
        requeue: bool = False,
        max_submitted: int = 0,
        rendezvous: bool = False,
        **kwargs: Any,  # the job-script settings every scheduler shares (mlxpy.Scheduler)
    ) -> None:
        super().__init__(**kwargs)
        if max_submitted < 0:
            raise ValueError("max_submitted must be 0 (no limit) or more")
        if rendezvous and not several_resources(self.option_cmd):
            raise ValueError(
                "rendezvous: true is for a job of several cores or nodes, and option_cmd "
                f"asks for one resource ({self.option_cmd or 'no -l'}): ask for more, such as "
                "option_cmd: ['-l core=2'] or ['-l nodes=2/core=4'], or set rendezvous: false"
            )
        self.rendezvous = rendezvous
        self.use_arrays = use_arrays
        self.checkpoint_s = checkpoint_s
        self.requeue = requeue
        self.max_submitted = max_submitted
        self._process_start = time.monotonic()  # in a job: soon after OAR started it

    def directives(self, job: ScheduledJob) -> list[str]:
        out, err = self.output_paths(job)
        lines = [f"-n {job.name}", f"-O {out}", f"-E {err}"]
        if self.checkpoint_s > 0:
            lines += [f"--checkpoint {self.checkpoint_s}", "--signal 12"]
        if self.requeue:
            lines.append("-t idempotent")
        return lines + list(self.option_cmd)

    def task_setup(self, job: ScheduledJob, command: Sequence[str]) -> list[str]:
        """With ``rendezvous``: ``MASTER_ADDR`` and ``MASTER_PORT`` exported, unless set (the
        job's command runs on the first node of its resources, which heads the node file)."""
        if not self.rendezvous:
            return []
        return self.rendezvous_exports('head -n1 "$OAR_NODEFILE"', "$OAR_JOB_ID", command[0])

    def _submit(self, args: list[str], what: str) -> list[str]:
        try:
            out = self.call(args, what)
        except SubmissionError:
            raise
        ids = _JOB_ID.findall(out)
        if not ids or any(int(i) < 0 for i in ids):
            raise SubmissionError(f"{what} failed: {out.strip()}")
        return ids

    def submit(self, script_path: Path, after: Sequence[str] = ()) -> str:
        anterior = [word for job_id in after for word in ("-a", str(job_id))]
        return self._submit(["oarsub", *anterior, "-S", str(script_path)], "oarsub")[0]

    def max_submitted_jobs(self) -> int | None:
        """``max_submitted`` less this user's jobs OAR has not finished; None: no cap."""
        if not self.max_submitted:
            return None
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
        jobs = json.loads(self.call(["oarstat", "-J", "-u", user], "oarstat") or "{}")
        return max(self.max_submitted - len(jobs), 0)

    def max_array_size(self) -> int:
        return 100_000

    def submit_array(self, script_path: Path, count: int, first_job: ScheduledJob) -> list[str]:
        ids = self._submit(
            ["oarsub", "--array", str(count), "-S", str(script_path)], "oarsub --array"
        )
        if len(ids) != count:
            raise SubmissionError(f"oarsub --array {count} returned {len(ids)} job ids")
        return ids

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """One ``oarstat -f -J -j ID -j ID ...`` (one more per automatic resubmission to
        follow). ``Terminated`` is not success: the exit code (a raw wait status) tells."""
        found = {}
        for job_id, (current, job) in self.latest_jobs(job_ids).items():
            if job is None:
                continue
            raw = job.get("exit_code")
            code = None if raw in (None, "") else int(raw) >> 8
            events = [e for e in job.get("events") or [] if isinstance(e, dict)]
            word = job.get("state", "UNKNOWN")
            found[job_id] = JobState(
                word,
                PHASES.get(word, JobPhase.RUNNING),
                code,
                _reason(events),
                cancelled=_was_cancelled(events),
                current_job_id=current if current != job_id else None,
            )
        return found

    def latest_jobs(self, job_ids: Sequence[str]) -> dict[str, tuple[str, dict | None]]:
        """Each job id with the job now standing for it, following OAR's automatic
        resubmissions of idempotent jobs, and that job's ``oarstat`` record."""
        if not job_ids:
            return {}
        records = self._oarstat(job_ids)
        current = {str(j): str(j) for j in job_ids}
        for _ in range(100):  # each round follows one resubmission of every job
            moved = {}
            for job_id, now in current.items():
                successor = _resubmitted_as(records.get(now))
                if successor is not None:
                    moved[job_id] = successor
            records.update(self._oarstat(sorted(set(moved.values()) - records.keys())))
            moved = {job_id: new for job_id, new in moved.items() if new in records}
            if not moved:  # nothing resubmitted, or OAR has no record of the new job
                break
            current.update(moved)
        return {job_id: (now, records.get(now)) for job_id, now in current.items()}

    def _oarstat(self, job_ids: Sequence[str]) -> dict[str, dict]:
        if not job_ids:
            return {}
        args = ["oarstat", "-f", "-J"]
        for job_id in job_ids:
            args += ["-j", str(job_id)]
        data = json.loads(self.call(args, "oarstat") or "{}")
        return {str(job_id): job for job_id, job in data.items()}

    def cancel(self, job_ids: Sequence[str]) -> None:
        """``oardel`` the jobs, or the jobs OAR resubmitted them as."""
        live = [
            now
            for now, job in self.latest_jobs(job_ids).values()
            if job is None or PHASES.get(str(job.get("state"))) is not JobPhase.DONE
        ]
        if live:
            self.call(["oardel", *live], "oardel")

    def can_requeue_current_job(self) -> bool:
        """Whether OAR will resubmit this job when it exits with 99 (NodeChangeState in
        OAR 2.5): not for a reservation, and only after a minute of running, which
        :meth:`requeue_current_job` waits for when the walltime leaves time."""
        job_id = os.environ.get("OAR_JOB_ID")
        if not (self.requeue and job_id):
            return False
        if _has_reservation(self.option_cmd):
            why = "OAR never resubmits a job in an advance reservation (-r)"
        elif self._wait_before_requeue() is None:
            why = (
                f"OAR resubmits an idempotent job only after it ran {OAR_MIN_RUN_S} s, and "
                f"its walltime ends first; give it a walltime over checkpoint_s + "
                f"{OAR_MIN_RUN_S} s"
            )
        else:
            return True
        print(
            f"mlxpy: OAR job {job_id} is not requeued: {why}. Resume the run with "
            f"`oarsub --resubmit {job_id}` once the job has ended.",
            file=sys.stderr,
        )
        return False

    def requeue_current_job(self) -> bool:
        """Run after the run is recorded: wait out OAR's one minute; OAR then resubmits
        the job as it exits with :attr:`requeue_exit_code`."""
        time.sleep(self._wait_before_requeue() or 0.0)
        return True

    def _wait_before_requeue(self) -> float | None:
        """Seconds this job must still run for OAR to resubmit it; None when its walltime
        ends first. Measured on the node from this process's start, which comes after OAR's
        start time, so the wait errs long, and the time left errs by the start-up delay,
        which the margin covers."""
        ran = time.monotonic() - self._process_start
        wait = max(0.0, OAR_MIN_RUN_S + _MARGIN_S - ran)
        walltime = float(os.environ.get("OAR_JOB_WALLTIME_SECONDS") or "inf")
        if wait > 0 and wait > walltime - ran - _STARTUP_MARGIN_S:
            return None
        return wait

    @classmethod
    def task_environment(cls, env: Mapping[str, str]) -> mlxpy.SchedulerTask | None:
        """A process in an OAR job: the job (``oar:<OAR_JOB_ID>``), the same on every node.
        OAR starts the job's command once and sets no rank: the ranks of a job of several
        processes come from what the job runs (torchrun, mpirun)."""
        job = env.get("OAR_JOB_ID")
        return mlxpy.SchedulerTask(f"oar:{job}") if job else None

    def current_job(self) -> dict[str, Any]:
        env = os.environ
        info: dict[str, Any] = {}
        if env.get("OAR_JOB_ID"):
            info["job_id"] = env["OAR_JOB_ID"]
        if env.get("OAR_ARRAY_ID"):
            info["array_id"] = env["OAR_ARRAY_ID"]
        nodefile = env.get("OAR_NODEFILE")
        if nodefile and os.path.exists(nodefile):
            with open(nodefile) as handle:
                info["node"] = handle.readline().strip()
        return info


def _resubmitted_as(job: dict | None) -> str | None:
    """The id OAR gave this job when it resubmitted it automatically, if it did."""
    for event in (job or {}).get("events") or []:
        if isinstance(event, dict) and event.get("type") == "RESUBMIT_JOB_AUTOMATICALLY":
            match = _RESUBMITTED_AS.search(str(event.get("description", "")))
            if match:
                return match.group(1)
    return None


def _reason(events: list[dict]) -> str | None:
    """Why a job ended, from its OAR events: e.g. ``OUTPUT_FILES: Cannot create .stdout and
    .stderr files in /dir on the node n1`` for a job in ``Error``."""
    parts = [
        f"{event.get('type')}: {_EVENT_SOURCE.sub('', str(event.get('description', '')))}"
        for event in events
        if event.get("type") not in _ROUTINE_EVENTS
    ]
    return "; ".join(parts) or None


def _was_cancelled(events: list[dict]) -> bool:
    """oardel asks to frag the job; so do the walltime kill and a besteffort preemption,
    which are no cancellations."""
    types = {event.get("type") for event in events}
    return "FRAG_JOB_REQUEST" in types and not types & {"WALLTIME", "BESTEFFORT_KILL"}


def _has_reservation(option_cmd: Sequence[str]) -> bool:
    for line in option_cmd:
        for word in shlex.split(line):
            if word == "-r" or word.startswith(("-r", "--reservation")):
                return True
    return False
