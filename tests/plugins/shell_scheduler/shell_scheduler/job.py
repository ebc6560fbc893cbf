"""The runner of one ShellScheduler job, started detached with ``setsid``: it waits while
the job is held, runs the script, and records each state in the job's ``state.json``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shell_scheduler import JOB_ID_VAR, read_directives, write_state


def run(job_dir: Path, script: Path, shell: str) -> None:
    # a SIGTERM to the process group is for the job: the runner lives on to record the end
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    cancelled = job_dir / "cancel"
    words = read_directives(script)
    if "--hold" in words:
        write_state(job_dir, state="HELD")
        while not cancelled.exists():  # nothing releases a job in these tests
            if not job_dir.is_dir():  # its test is over and its tmp dir removed: never outlive it
                return
            time.sleep(0.1)
    if cancelled.exists():
        write_state(job_dir, state="CANCELLED")
        return
    paths = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if "=" in w}
    with (
        open(paths.get("--output", os.devnull), "ab") as out,
        open(paths.get("--error", os.devnull), "ab") as err,
    ):
        job = subprocess.Popen(
            [shell, str(script)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env={**os.environ, JOB_ID_VAR: job_dir.name},
        )
        write_state(job_dir, state="RUNNING", pid=job.pid)
        code = job.wait()
    word = "CANCELLED" if cancelled.exists() else "COMPLETED" if code == 0 else "FAILED"
    write_state(job_dir, state=word, exit_code=code if code >= 0 else 128 - code)


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
