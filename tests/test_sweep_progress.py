"""What a sweep shows while it runs: one redrawn status line on a terminal, plain lines in a
log; each run's id and dir as it starts; one summary line at the end; stdout left to the
task. Real launches, with stderr a real pseudo-terminal for the terminal case."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import pytest
from mlxpy.sweeping.manifest import list_sweeps
from mlxpy.testing import ProjectDir

CONFIG = {"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0}


@pytest.fixture
def project(tmp_path):
    project = ProjectDir(tmp_path / "p")
    project.write_config(CONFIG)
    return project


def test_in_a_log_each_event_is_a_plain_line(project):
    result = project.run("seed=1,2", "lr=0.5,0.7")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("[mlxpy]")]
    runs = [line for line in lines if line.startswith("[mlxpy] run ")]
    assert len(runs) == 4 and all(re.fullmatch(r"\[mlxpy\] run \d+ /\S+/logs/\d+", r) for r in runs)
    ended = [line for line in lines if re.match(r"\[mlxpy\] \d/4 ended", line)]
    assert [line.split()[1] for line in ended] == ["1/4", "2/4", "3/4", "4/4"]
    assert re.fullmatch(
        r"\[mlxpy\] 4/4 ended \(0 failed\), 0 running, 0:\d\d elapsed, ETA 0:00", ended[-1]
    )
    assert "ETA" in ended[0] and "ETA ?" not in ended[0]
    (sweep_id,) = list_sweeps(project.logs)[-1:]
    assert re.fullmatch(rf"\[mlxpy\] sweep {sweep_id}: 4 runs: 4 COMPLETE in \d+\.\d s", lines[-1])
    # stdout is the task's own
    assert all(line.startswith("RUN ") for line in result.stdout.splitlines())


def test_the_summary_counts_each_status(project):
    result = project.run("seed=1,2,3", "mode=ok,fail")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"\[mlxpy\] sweep \S+: 6 runs: 3 COMPLETE, 3 FAILED in \d+\.\d s", last)
    assert "mlxpy: 3 of 6 jobs failed" in result.stderr
    assert "[mlxpy] 6/6 ended (3 failed)" in result.stderr


def run_on_a_terminal(project: ProjectDir, *args: str) -> tuple[int, str, str]:
    """Run ``main.py`` with stderr on a pseudo-terminal (stdout a pipe); returns the exit
    status, what the terminal got and stdout."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(project.root / "main.py"), *args],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, **project.env},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace"), stdout


def test_on_a_terminal_one_status_line_is_redrawn(project):
    code, terminal, stdout = run_on_a_terminal(project, "seed=1,2,3", "mode=sleep", "sleep=0.2")
    assert code == 0, terminal
    redraws = re.findall(r"\r\x1b\[K(\[mlxpy\] \d/3 ended[^\r\n]*)", terminal)
    assert redraws, terminal
    assert any("0/3 ended (0 failed), 1 running" in r for r in redraws)
    assert any(r.startswith("[mlxpy] 3/3 ended (0 failed), 0 running") for r in redraws)
    # progress is redrawn, never written as lines of its own; events still are lines
    assert not re.search(r"ended \([^\r\n]*ETA [^\r\n]*\r?\n", terminal)
    assert len(re.findall(r"\[mlxpy\] job \d/3 COMPLETE", terminal)) == 3
    # the status line is cleared before the report's command and the summary, which ends
    # the output
    assert re.search(
        r"\r\x1b\[K\[mlxpy\] report: mlxpy report \S+ -q 'info.sweep_id == \"\S+\"'\r?\n"
        r"\[mlxpy\] sweep \S+: 3 runs: 3 COMPLETE in [\d.]+ s\r?\n$",
        terminal,
    )
    assert stdout.count("RUN ") == 3 and "\x1b" not in stdout


# an adaptive sweeper of the project itself (selected by its dotted path): two trials
COUNTING_SWEEPER = """
from mlxpy.sweeping.sweeper import Sweeper, Trial


class CountingSweeper(Sweeper):
    name = "CountingSweeper"
    adaptive = True
    objective = "train.loss.min"

    def open(self, sweep_dir, space):
        self.fixed, self.asked = list(space.fixed), 0

    def ask(self):
        if self.asked == 2:
            return None
        self.asked += 1
        return Trial(self.asked - 1, [*self.fixed, f"seed={self.asked}"])

    def tell(self, trial, value, status):
        pass

    def running(self):
        return []

    def best(self):
        return None
"""


def test_an_adaptive_launch_ends_with_its_summary_line_too(project):
    (project.root / "counting_sweeper.py").write_text(COUNTING_SWEEPER)
    result = project.run("+mlxpy.sweep.name=counting_sweeper.CountingSweeper")
    assert result.returncode == 0, result.stderr
    (sweep_id,) = list_sweeps(project.logs)
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"\[mlxpy\] sweep {sweep_id}: 2 trials: 2 COMPLETE in \d+\.\d s", last)


def test_sweep_status_shows_a_point_whose_run_id_is_0(project):
    """Run ids are names: 0 is one (a run dir someone named so, a forced id)."""
    import json
    import shutil

    from mlxpy.sweeping.manifest import JournalEntry, append_journal

    assert project.run("seed=1,2").returncode == 0
    (sweep_id,) = list_sweeps(project.logs)
    shutil.copytree(project.logs / "1", project.logs / "0")
    uid = project.info(project.logs / "0")["uid"]
    append_journal(project.logs, sweep_id, JournalEntry(0, 0, uid))
    points = json.loads(project.mlxpy("sweep", "status", sweep_id, "--format", "json").stdout)
    assert [p["log_id"] for p in points["points"]] == [0, 2]
    table = project.mlxpy("sweep", "status", sweep_id).stdout.splitlines()
    row = next(line for line in table if line.startswith("0 "))
    assert row.split()[:3] == ["0", "0", "COMPLETE"]


def test_resume_true_continues_the_adaptive_sweep_of_the_same_command(project):
    """The same command is the same project and overrides, however the script is named."""
    (project.root / "counting_sweeper.py").write_text(COUNTING_SWEEPER)
    name = "+mlxpy.sweep.name=counting_sweeper.CountingSweeper"
    assert project.run(name).returncode == 0  # argv[0]: the script's absolute path
    (sweep_id,) = list_sweeps(project.logs)
    again = subprocess.run(
        [sys.executable, "main.py", name, "+mlxpy.sweep.resume=true"],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert f"[mlxpy] sweep {sweep_id}: continuing its study" in again.stderr
    assert list_sweeps(project.logs) == [sweep_id]
