"""A scheduler's hooks for jobs of several processes (``Scheduler.task_setup``,
``Scheduler.task_launcher``) in the job scripts the core writes, and the rendezvous lines
(``Scheduler.rendezvous_exports``) run by a real shell. The launcher here is a small Python
program standing in for a cluster's (which cannot run without a cluster): it starts one
process per rank and passes the warning signal on, as a cluster's launcher does."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlxpy.scheduling import job_script
from mlxpy.scheduling.base import ScheduledJob, Scheduler

# starts argv[1] processes of the rest of argv with RANK set; forwards SIGUSR1 to them. Its
# handler is installed first, so they start with SIGUSR1's default action (a cluster's
# launcher has its tasks started afresh), whatever the launcher was started with
LAUNCHER = """
import os, signal, subprocess, sys
count, command, ranks = int(sys.argv[1]), sys.argv[2:], []
signal.signal(signal.SIGUSR1, lambda *_: [p.send_signal(signal.SIGUSR1) for p in ranks])
ranks += [subprocess.Popen(command, env={**os.environ, "RANK": str(k)}) for k in range(count)]
sys.exit(max(p.wait() for p in ranks))
"""

# one rank: notes how it started, waits for the warning, notes it
RANK = """
import os, signal, sys, time
from pathlib import Path
out = Path(sys.argv[1]) / os.environ["RANK"]
ignored = signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
out.write_text(f"{os.environ['SETUP_MARK']} {ignored}\\n")
deadline = time.monotonic() + 30
while not got and time.monotonic() < deadline:
    time.sleep(0.05)
with out.open("a") as f:
    f.write("warned\\n" if got else "no warning\\n")
"""


class Warned(Scheduler):
    name = "Warned"
    warning_signals = {"SIGUSR1": "TIMEOUT"}

    def directives(self, job: ScheduledJob) -> list[str]:
        return []


class TwoRanks(Warned):
    """Starts each job's task twice through LAUNCHER, after a setup line."""

    name = "TwoRanks"
    launcher_path = ""

    def task_setup(self, job: ScheduledJob, command: list[str]) -> list[str]:
        return [f"export SETUP_MARK=set-up-for-{Path(command[0]).name}"]

    def task_launcher(self, job: ScheduledJob) -> list[str]:
        return [sys.executable, self.launcher_path, "2"]


def _job(tmp_path: Path, number: int = 1) -> ScheduledJob:
    log_dir = tmp_path / "logs" / str(number)
    log_dir.mkdir(parents=True, exist_ok=True)
    job = ScheduledJob(log_id=number, log_dir=log_dir, overrides=["x=1"], name=f"n{number}")
    job.extra.update(command=["python3", "main.py", "x=1"], env={"K": "v"})
    return job


def test_the_hooks_add_their_lines_and_change_nothing_else(tmp_path):
    """Without hooks (the base's defaults) the script starts the task itself; with them, it
    differs only by the setup lines (and the note-only trap around them) and the launcher
    before the command."""
    job = _job(tmp_path)
    command = ["python3", "main.py"]
    plain = job_script.run_script(Warned(), job, command, tmp_path, {"K": "v"})
    hooked = TwoRanks()
    hooked.launcher_path = "/l.py"
    text = job_script.run_script(hooked, job, command, tmp_path, {"K": "v"})
    launched = [sys.executable, "/l.py", "2", "/bin/sh", "-c", 'trap "" USR1; exec "$@"']
    launched += ["mlxpy-task", *command]
    setup = [
        f"trap {shlex.quote(f'echo SIGUSR1 > {job.log_dir / job_script.WARNING_NOTE}')} USR1",
        "export SETUP_MARK=set-up-for-python3",
    ]
    assert [
        shlex.join(command) + " &" if line == shlex.join(launched) + " &" else line
        for line in text.splitlines()
        if line not in setup
    ] == plain.splitlines()
    assert text.index(setup[-1]) < text.index("trap '' USR1") < text.index(shlex.join(launched))


def test_a_launched_task_starts_with_the_warning_ignored_and_receives_it(tmp_path):
    """Through the launcher, each rank starts with the warning signal ignored (a launcher's
    processes would otherwise die of an early warning), sees the setup's exports, and gets
    the warning the job's shell receives."""
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    rank = tmp_path / "rank.py"
    rank.write_text(RANK)
    outs = tmp_path / "ranks"
    outs.mkdir()
    scheduler = TwoRanks()
    scheduler.launcher_path = str(launcher)
    job = _job(tmp_path)
    script = tmp_path / "script.sh"
    command = [sys.executable, str(rank), str(outs)]
    script.write_text(job_script.run_script(scheduler, job, command, tmp_path, {}))
    shell = subprocess.Popen(["/bin/bash", str(script)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(list(outs.iterdir())) < 2:
        assert time.monotonic() < deadline and shell.poll() is None, shell.stderr
        time.sleep(0.05)
    time.sleep(0.3)  # the launcher's handler is installed before its ranks start
    os.kill(shell.pid, signal.SIGUSR1)
    _, err = shell.communicate(timeout=30)
    assert shell.returncode == 0, err
    mark = f"set-up-for-{Path(sys.executable).name}"
    for k in ("0", "1"):
        assert (outs / k).read_text() == f"{mark} True\nwarned\n"
    assert (job.log_dir / job_script.WARNING_NOTE).read_text() == "SIGUSR1\n"


def test_a_pack_runs_each_point_through_the_launcher_after_its_setup(tmp_path):
    """A packed job's points each run their setup in their own shell and start through the
    launcher; the script is valid shell and the setup output goes to the point's files."""
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    jobs = [_job(tmp_path, n) for n in (1, 2)]
    scheduler = TwoRanks()
    scheduler.launcher_path = str(launcher)
    code = "import os,sys; print(os.environ['RANK'], os.environ['SETUP_MARK'])"
    for job in jobs:
        job.extra["command"] = [sys.executable, "-c", code]
    pack = ScheduledJob(log_id=None, log_dir=tmp_path, overrides=[], name="pack")
    text = job_script.pack_script(scheduler, pack, jobs, tmp_path, tmp_path / "p.done")
    script = tmp_path / "pack.sh"
    script.write_text(text)
    result = subprocess.run(["/bin/bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    mark = f"set-up-for-{Path(sys.executable).name}"
    for job in jobs:
        lines = sorted((job.log_dir / "job.stdout").read_text().splitlines())
        assert lines == [f"0 {mark}", f"1 {mark}"]


def _rendezvous(tmp_path: Path, job_id: int, env: dict[str, str]) -> dict[str, str]:
    lines = Scheduler.rendezvous_exports("echo host-a", str(job_id), sys.executable)
    script = "\n".join([*lines, 'echo "$MASTER_ADDR $MASTER_PORT"'])
    clean = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    result = subprocess.run(
        ["/bin/bash", "-c", script], capture_output=True, text=True, env={**clean, **env}
    )
    assert result.returncode == 0, result.stderr
    addr, port = result.stdout.split()
    return {"addr": addr, "port": port, "stderr": result.stderr}


def _free_job_id(start: int) -> int:
    """A job id whose first port and the next two are free here now."""
    for job_id in range(start, start + 15000, 7):
        ports = [17000 + job_id % 15000 + k for k in range(3)]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("", port))
        except OSError:
            continue
        return job_id
    raise AssertionError("no free ports to test with")


def test_rendezvous_port_comes_from_the_job_id_and_skips_busy_ports(tmp_path):
    job_id = _free_job_id(123_456)
    first = 17000 + job_id % 15000
    assert _rendezvous(tmp_path, job_id, {}) == {"addr": "host-a", "port": str(first), "stderr": ""}
    with socket.socket() as busy:  # another job's rendezvous on this node
        busy.bind(("", first))
        busy.listen()
        assert _rendezvous(tmp_path, job_id, {})["port"] == str(first + 1)
    # values inherited from the submitting shell (sbatch exports it) are replaced: a fixed
    # port would be every job's, an address the login node's
    inherited = _rendezvous(tmp_path, job_id, {"MASTER_ADDR": "login", "MASTER_PORT": "4242"})
    assert (inherited["addr"], inherited["port"]) == ("host-a", str(first))


@pytest.mark.parametrize("job_id", [17, 15017])
def test_rendezvous_ports_stay_below_the_ephemeral_range(tmp_path, job_id):
    port = int(_rendezvous(tmp_path, job_id, {})["port"])
    assert 17000 <= port < 32768 and (port - 17000 - job_id % 15000) in range(50)
