"""ShellScheduler: a scheduler plugin that exists only for mlxpy's tests, to prove that a new
scheduler needs no change to the core. Each job script runs detached (``setsid``) on this
machine under a small runner (:mod:`shell_scheduler.job`) that keeps the job's state in a
file; ``#SHELL`` directives give its output files and ``--hold``.

Select it with ``scheduler: {name: ShellScheduler, state_dir: /some/dir}``."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlxpy
from mlxpy import JobPhase, JobState, Scheduler, SubmissionError

#: the states the runner writes, and what each means
PHASES = {
    "QUEUED": JobPhase.QUEUED,
    "HELD": JobPhase.QUEUED,
    "RUNNING": JobPhase.RUNNING,
    "COMPLETED": JobPhase.DONE,
    "FAILED": JobPhase.DONE,
    "CANCELLED": JobPhase.DONE,
}
#: the directives a job script may carry (after ``#SHELL``)
DIRECTIVES = ("--output=", "--error=", "--hold")
JOB_ID_VAR = "SHELL_JOB_ID"


def read_directives(script: Path) -> list[str]:
    """The ``#SHELL`` directives of a job script, each split as a shell would."""
    words: list[str] = []
    for line in script.read_text().splitlines():
        if line.startswith(ShellScheduler.directive_prefix + " "):
            words += shlex.split(line[len(ShellScheduler.directive_prefix) :])
    return words


def read_state(job_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((job_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("state") in PHASES else None


def write_state(job_dir: Path, **state: Any) -> None:
    tmp = job_dir / "state.tmp"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, job_dir / "state.json")


class ShellScheduler(Scheduler):
    """Runs each job script detached on this machine; ``state_dir`` holds one directory per
    job (default: ``mlxpy-shell-<uid>`` in the temp dir)."""

    name = "ShellScheduler"
    directive_prefix = "#SHELL"
    reserved_directives = {
        "--output": "mlxpy writes each job's output into its run dir",
        "--error": "mlxpy writes each job's errors into its run dir",
    }
    job_id_pattern = r"sh-[0-9a-f]{12}"

    def __init__(self, state_dir: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state_dir = state_dir

    def root(self) -> Path:
        default = Path(tempfile.gettempdir()) / f"mlxpy-shell-{os.getuid()}"
        root = Path(self.state_dir).expanduser() if self.state_dir else default
        root.mkdir(parents=True, exist_ok=True)
        return root

    def directives(self, job: mlxpy.ScheduledJob) -> list[str]:
        out, err = self.output_paths(job)
        return [f"--output={shlex.quote(out)}", f"--error={shlex.quote(err)}", *self.option_cmd]

    def submit(self, script_path: Path) -> str:
        unknown = [w for w in read_directives(script_path) if not w.startswith(DIRECTIVES)]
        if unknown:
            raise SubmissionError(f"shell submit failed: unknown directive(s) {unknown}")
        if not os.access(self.shell_path, os.X_OK):
            raise SubmissionError(f"shell submit failed: {self.shell_path} cannot be executed")
        job_id = f"sh-{secrets.token_hex(6)}"
        job_dir = self.root() / job_id
        job_dir.mkdir()
        write_state(job_dir, state="QUEUED")
        self.calls += 1
        runner = subprocess.Popen(  # setsid: the runner leads a new session and process group
            ["setsid", sys.executable, "-m", "shell_scheduler.job", str(job_dir)]
            + [str(script_path), self.shell_path],
            cwd=job_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (job_dir / "runner.pid").write_text(str(runner.pid))
        return job_id

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        self.calls += 1
        found = {}
        for job_id in job_ids:
            state = read_state(self.root() / job_id)
            if state is not None:
                word = state["state"]
                found[job_id] = JobState(
                    word, PHASES[word], state.get("exit_code"), cancelled=word == "CANCELLED"
                )
        return found

    def cancel(self, job_ids: Sequence[str]) -> None:
        """A queued or held job is marked cancelled (its runner then never starts it); a
        running one also gets SIGTERM, sent to the runner's process group."""
        self.calls += 1
        for job_id in job_ids:
            job_dir = self.root() / job_id
            state = read_state(job_dir)
            if state is None or PHASES[state["state"]] is JobPhase.DONE:
                continue
            (job_dir / "cancel").touch()
            pid = _runner_pid(job_dir)
            if state["state"] == "RUNNING" and pid is not None:
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def current_job(self) -> dict[str, Any]:
        job_id = os.environ.get(JOB_ID_VAR)
        return {"job_id": job_id} if job_id else {}


def _runner_pid(job_dir: Path) -> int | None:
    """The runner's pid, only while that process is still this job's runner (a pid is
    reused once its process is gone)."""
    try:
        pid = int((job_dir / "runner.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if str(job_dir).encode() in cmdline else None


@mlxpy.hookimpl
def mlxpy_register_schedulers() -> list[type]:
    return [ShellScheduler]
