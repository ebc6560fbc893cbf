"""LocalScheduler: runs the same job scripts a cluster would, on this machine, at most
``max_workers`` at a time, in a detached supervisor process, so a workstation gets parallel
sweeps and the scheduler contract is testable without a cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyWarning
from mlxpy.hookspecs import hookimpl
from mlxpy.rundir.layout import RunDir
from mlxpy.scheduling.base import JobPhase, JobState, ScheduledJob, Scheduler, SubmissionError

INDEX_VAR = "MLXPY_LOCAL_TASK"
#: set in each job's environment to its job id: with the start time, what proves a process
#: is the job this scheduler started (a pid alone may have been reused, or forged)
JOB_VAR = "MLXPY_LOCAL_JOB"
#: ``<queue dir>_<task>``; the queue dir is a ``mkdtemp`` name under the state root
JOB_ID_PATTERN = r"q[A-Za-z0-9_]{1,64}_[0-9]{1,9}"
#: the states a task's state file holds, and what each means
PHASES = {
    "PENDING": JobPhase.QUEUED,
    "RUNNING": JobPhase.RUNNING,
    "COMPLETED": JobPhase.DONE,
    "FAILED": JobPhase.DONE,
    "CANCELLED": JobPhase.DONE,
}


class NotOurProcessWarning(MlxpyWarning):
    """A local job's recorded process is not the one the scheduler started; not signalled."""


def _state_root() -> Path:
    root = Path(tempfile.gettempdir()) / f"mlxpy-local-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as an opaque string (None if it does not exist): the
    start time in clock ticks from ``/proc/<pid>/stat`` on Linux, else from ``ps``."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]  # field 22, after the command name
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None  # Linux: the process is gone
    except (OSError, ValueError, IndexError):
        return None
    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(int(pid))], capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _is_our_job(pid: Any, start: Any, job_id: str) -> bool:
    """Whether ``pid`` is the job process this scheduler started as ``job_id``: same start
    time as recorded, and the job id in its environment (where the OS lets us read it)."""
    if type(pid) is not int or pid <= 1 or not isinstance(start, str):
        return False
    if process_start(pid) != start:
        return False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self/environ").exists()  # no /proc: the start time decides
    except OSError:
        return False
    return f"{JOB_VAR}={job_id}".encode() in environ


def _write_state(path: Path, **state: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


class LocalScheduler(Scheduler):
    """Runs job scripts locally; ``gpus`` gives each worker one ``CUDA_VISIBLE_DEVICES``."""

    name = "LocalScheduler"
    array_index_var = INDEX_VAR
    array_index_base = 0
    job_id_pattern = JOB_ID_PATTERN
    can_throttle_arrays = True  # an array runs on at most max_workers (or max_running)

    def __init__(
        self,
        max_workers: int = 1,
        gpus: list[str] | None = None,
        use_arrays: bool = True,
        **kwargs: Any,  # the job-script settings every scheduler shares (Scheduler)
    ) -> None:
        super().__init__(**kwargs)
        self.max_workers = max(1, max_workers)
        self.gpus = [str(g) for g in gpus or []]
        self.use_arrays = use_arrays

    def directives(self, job: ScheduledJob) -> list[str]:
        return []

    def max_array_size(self) -> int:
        return 1_000_000

    def _start(self, script: Path, count: int, single: bool, workers: int = 0) -> str:
        if not os.access(self.shell_path, os.X_OK):
            raise SubmissionError(
                f"local submit failed: the shell {self.shell_path} (scheduler.shell_path) "
                "does not exist or cannot be executed"
            )
        queue = Path(tempfile.mkdtemp(prefix="q", dir=_state_root()))
        for task in range(count):
            _write_state(queue / f"{task}.json", state="PENDING")
        args = [
            sys.executable,
            "-m",
            "mlxpy.scheduling.local",
            str(queue),
            str(script),
            str(count),
            str(workers or self.max_workers),
            json.dumps(self.gpus),
            self.shell_path,
            "single" if single else "array",
        ]
        subprocess.Popen(
            args,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return queue.name

    def submit(self, script_path: Path) -> str:
        return f"{self._start(script_path, 1, single=True)}_0"

    def current_job(self) -> dict[str, Any]:
        """From inside a job: its id (a sweep worker's runs, claimed in the job, learn it
        here; a submitted run's was recorded at submission)."""
        job_id = os.environ.get(JOB_VAR, "")
        return {"job_id": job_id} if re.fullmatch(JOB_ID_PATTERN, job_id) else {}

    def submit_array(
        self,
        script_path: Path,
        count: int,
        first_job: ScheduledJob,
        max_running: int = 0,
        after: Sequence[str] = (),
    ) -> list[str]:
        if after:  # one array holds any sweep (max_array_size): never asked to wait
            raise SubmissionError("LocalScheduler cannot make an array wait for other jobs")
        workers = min(self.max_workers, max_running) if max_running > 0 else 0
        queue = self._start(script_path, count, single=False, workers=workers)
        return [f"{queue}_{i}" for i in range(count)]

    def _state_path(self, job_id: str) -> Path | None:
        """The state file of ``job_id``; None for an id this scheduler never gives (it could
        name a file anywhere)."""
        if not isinstance(job_id, str) or not re.fullmatch(JOB_ID_PATTERN, job_id):
            return None
        queue, _, task = job_id.rpartition("_")
        return _state_root() / queue / f"{task}.json"

    def _read_state(self, job_id: str) -> tuple[Path, dict[str, Any]] | None:
        path = self._state_path(job_id)
        if path is None:
            return None
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return (path, state) if isinstance(state, dict) and "state" in state else None

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        out = {}
        for job_id in job_ids:
            found = self._read_state(job_id)
            if found is not None and found[1]["state"] in PHASES:
                word = found[1]["state"]
                out[job_id] = JobState(
                    word,
                    PHASES[word],
                    found[1].get("exit_code"),
                    cancelled=word == "CANCELLED",
                )
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Mark pending jobs cancelled; SIGTERM the process group of running ones, only when
        the recorded process is provably the job started (a pid may have been reused)."""
        for job_id in job_ids:
            found = self._read_state(job_id)
            if found is None:
                continue
            path, state = found
            if state["state"] == "PENDING":
                _write_state(path, state="CANCELLED")
            elif state["state"] == "RUNNING" and state.get("pid"):
                pid = state["pid"]
                if type(pid) is int and process_start(pid) is None:
                    continue  # ended meanwhile; the supervisor records how
                if not _is_our_job(pid, state.get("start"), job_id):
                    warnings.warn(
                        f"job {job_id}: process {pid} is not the one this scheduler started "
                        "(it ended and its pid was reused, or the record was altered); not "
                        "signalled",
                        NotOurProcessWarning,
                        stacklevel=2,
                    )
                    continue
                _write_state(path, **{**state, "cancel": True})
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def _supervise(
    queue: Path, script: str, count: int, workers: int, gpus: list[str], shell: str, mode: str
) -> None:
    running: dict[int, tuple[subprocess.Popen, int]] = {}
    pending = list(range(count))
    free_slots = list(range(workers))
    while pending or running:
        while pending and free_slots:
            task = pending.pop(0)
            path = queue / f"{task}.json"
            if json.loads(path.read_text())["state"] == "CANCELLED":
                continue
            slot = free_slots.pop(0)
            env = {**os.environ, INDEX_VAR: str(task), JOB_VAR: f"{queue.name}_{task}"}
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
            if mode == "single":
                run = RunDir(Path(script).parent)
                out, err = open(run.job_stdout, "ab"), open(run.job_stderr, "ab")
            else:
                out = err = open(queue / f"{task}.out", "ab")
            proc = subprocess.Popen(
                [shell, script],
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            running[task] = (proc, slot)
            _write_state(path, state="RUNNING", pid=proc.pid, start=process_start(proc.pid))
        for task, (proc, slot) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            path = queue / f"{task}.json"
            cancelled = json.loads(path.read_text()).get("cancel")
            state = "CANCELLED" if cancelled else ("COMPLETED" if code == 0 else "FAILED")
            _write_state(path, state=state, exit_code=code if code >= 0 else 128 - code)
            del running[task]
            free_slots.append(slot)
        time.sleep(0.05)


if __name__ == "__main__":  # the detached supervisor
    _q, _script, _count, _workers, _gpus, _shell, _mode = sys.argv[1:8]
    _supervise(Path(_q), _script, int(_count), int(_workers), json.loads(_gpus), _shell, _mode)


@hookimpl
def mlxpy_register_schedulers() -> list[type]:
    """The builtin's registration, as a plugin's ``plugin.py`` would write it."""
    return [Scheduler, LocalScheduler]
