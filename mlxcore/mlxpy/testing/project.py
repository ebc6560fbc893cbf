"""A real project in a temp dir (``main.py`` + ``configs/``), launched as ``python main.py
...`` and inspected as a user would: the suites and mlxpy's own tests build on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from mlxpy.rundir.layout import OPTIONS_FILE, RunDir, is_run_id
from mlxpy.rundir.status import FINAL, RunStatus

TERMINAL_RUN = {str(status) for status in FINAL}
COMPLETE, FAILED = RunStatus.COMPLETE.value, RunStatus.FAILED.value

SUITE_TASK = """
import sys, time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    c = ctx.config
    print("RUN", VERSION, c.lr, c.seed, repr(c.msg), flush=True)
    ctx.logger.log_metrics({"loss": c.lr * c.seed}, step=0)
    if c.mode == "fail":
        raise RuntimeError("failing on purpose")
    if c.mode == "sleep":
        time.sleep(c.sleep)

VERSION = "committed"

if __name__ == "__main__":
    task()
"""

# A task that resumes from its checkpoint and reports interruptions: for time-limit tests.
RESUMABLE_TASK = """
import time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    state = ctx.logger.load_checkpoint() or {"step": 0}
    print("start at", state["step"], "restarts", ctx.info.get("restarts", 0), flush=True)
    try:
        for step in range(state["step"], ctx.config.steps):
            time.sleep(1)
            ctx.logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            ctx.logger.log_checkpoint({"step": step + 1})
    except mlxpy.RunInterrupted as exc:
        print("interrupted:", exc.status, flush=True)
        raise

if __name__ == "__main__":
    task()
"""

# A sweep point that ends badly once: x == fail_at raises, x == kill_at is killed by SIGKILL,
# half-way through the first attempt (after a checkpoint); a resumed attempt goes on from its
# checkpoint and completes. For sweep-resume tests (config: x, fail_at, kill_at).
SWEEP_TASK = """
import os, signal
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    c = ctx.config
    state = ctx.logger.load_checkpoint() or {"step": 0}
    print("START", c.x, "from", state["step"], flush=True)
    first = state["step"] == 0
    for step in range(state["step"], 3):
        ctx.logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        ctx.logger.log_checkpoint({"step": step + 1})
        if first and step == 1 and c.x == c.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if first and step == 1 and c.x == c.fail_at:
            raise RuntimeError("failing half-way")

if __name__ == "__main__":
    task()
"""
SWEEP_CONFIG = {"x": 0, "fail_at": -1, "kill_at": -1}


class ProjectDir:
    """A project (``main.py`` + ``configs/``) in a temp dir; runs ``python main.py``."""

    def __init__(self, root: Path, main_source: str = SUITE_TASK) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.configs = self.root / "configs"
        self.logs = self.root / "logs"
        (self.root / "main.py").write_text(textwrap.dedent(main_source))
        self.command_prefix: list[str] = []
        self.env: dict[str, str] = {}

    def write_config(self, data: dict[str, Any], name: str = "config.yaml") -> None:
        self.configs.mkdir(exist_ok=True)
        (self.configs / name).write_text(yaml.safe_dump(data, sort_keys=False))

    def options(self) -> dict[str, Any]:
        return yaml.safe_load((self.configs / OPTIONS_FILE).read_text())

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.command_prefix, sys.executable, str(self.root / "main.py"), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )

    def run_ranks(
        self, world_size: int, *args: str, timeout: float = 120, run_id: str | None = None
    ) -> list[subprocess.CompletedProcess]:
        """Run ``python main.py ...`` as the ``world_size`` processes of one job on this host,
        started together with the variables ``torchrun --standalone`` gives each (``RANK``,
        ``LOCAL_RANK``, ``WORLD_SIZE``, ``TORCHELASTIC_RUN_ID``: ``run_id``, else a fresh uuid4
        as torchrun's own), without torch: what mlxpy sees of a distributed job. Returns each
        rank's result, by rank."""
        job = {
            "WORLD_SIZE": str(world_size),
            "LOCAL_WORLD_SIZE": str(world_size),
            "GROUP_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29500",
            "TORCHELASTIC_RUN_ID": run_id or str(uuid.uuid4()),
            "TORCHELASTIC_RESTART_COUNT": "0",
        }
        processes = [
            subprocess.Popen(
                [*self.command_prefix, sys.executable, str(self.root / "main.py"), *args],
                cwd=self.root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **self.env, **job, "RANK": str(k), "LOCAL_RANK": str(k)},
            )
            for k in range(world_size)
        ]
        deadline = time.monotonic() + timeout
        results = []
        try:
            for process in processes:
                left = max(deadline - time.monotonic(), 0.1)
                out, err = process.communicate(timeout=left)
                results.append(
                    subprocess.CompletedProcess(process.args, process.returncode, out, err)
                )
        finally:
            for process in processes:  # a timeout: none is left behind
                if process.poll() is None:
                    process.kill()
                    process.wait()
        return results

    def mlxpy(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.command_prefix, sys.executable, "-m", "mlxpy.cli", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
        )

    def status(self) -> list[dict[str, Any]]:
        """The rows of ``mlxpy status --format json`` (the scheduler's view, reconciled)."""
        result = self.mlxpy("status", "--format", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def run_dirs(self) -> list[Path]:
        if not self.logs.exists():
            return []
        return sorted(
            (p for p in self.logs.iterdir() if is_run_id(p.name)), key=lambda p: int(p.name)
        )

    def info(self, run_dir: Path) -> dict[str, Any]:
        return yaml.safe_load(RunDir(run_dir).info.read_text())

    def config(self, run_dir: Path) -> dict[str, Any]:
        return yaml.safe_load(RunDir(run_dir).config.read_text())

    def wait(self, count: int, timeout: float = 180, done: set[str] = TERMINAL_RUN) -> list:
        """Wait until ``count`` runs exist and all have a final status; return their infos."""
        deadline = time.monotonic() + timeout
        while True:
            infos = []
            for run_dir in self.run_dirs():
                try:
                    infos.append(self.info(run_dir))
                except (OSError, yaml.YAMLError):
                    infos.append({"status": "?"})
            if len(infos) >= count and all(i.get("status") in done for i in infos):
                return infos
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"runs did not finish in {timeout} s: {[i.get('status') for i in infos]}"
                )
            time.sleep(0.3)
