"""Test helpers for mlxpy and its plugins: real projects in temp dirs, launched as
``python main.py ...``, and :class:`SchedulerSuite`, the conformance suite every scheduler
plugin runs against its real cluster (subclass it in your plugin's tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlxpy.rundir.layout import OPTIONS_FILE, PATCH_FILE, RunDir, is_run_id
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

    def mlxpy(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.command_prefix, sys.executable, "-m", "mlxpy.cli", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
        )

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


class SchedulerSuite:
    """Conformance tests for a scheduler plugin, against a real cluster.

    Subclass it in the plugin's tests, set ``scheduler_name``, and override
    :meth:`prepare_project` (e.g. to submit as another user) and :meth:`check_job_id`.
    """

    scheduler_name: str = ""
    scheduler_settings: dict[str, Any] = {}
    timeout: float = 180

    def prepare_project(self, project: ProjectDir) -> None:
        """Adjust the project before launching (users, permissions, environment)."""

    def project_root(self, tmp_path: Path) -> Path:
        """Where the test project lives (a scheduler may need a dir its users can reach)."""
        return tmp_path / "proj"

    def check_job_id(self, job_id: str, array: bool) -> None:
        assert job_id

    @pytest.fixture
    def project(self, tmp_path: Path) -> ProjectDir:
        project = ProjectDir(self.project_root(tmp_path))
        project.write_config({"seed": 0, "lr": 0.1, "msg": "hi", "mode": "ok", "sleep": 0})
        project.write_config(
            {
                "logger": {"name": "DefaultLogger"},
                "scheduler": {"name": self.scheduler_name, **self.scheduler_settings},
                "use_scheduler": True,
            },
            OPTIONS_FILE,
        )
        self.prepare_project(project)
        return project

    def _sweep(self, project: ProjectDir, *extra: str, array: bool) -> None:
        start = time.monotonic()
        result = project.run("lr=0.1,0.01", "seed=1,2", *extra)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - start < 60  # submitting returns without waiting
        infos = project.wait(4, self.timeout)
        assert [i["status"] for i in infos] == [COMPLETE] * 4, infos
        combos = {(project.config(d)["lr"], project.config(d)["seed"]) for d in project.run_dirs()}
        assert combos == {(0.1, 1), (0.1, 2), (0.01, 1), (0.01, 2)}
        job_ids = [i["scheduler"]["job_id"] for i in infos]
        assert len(set(job_ids)) == 4
        for job_id, line in zip(job_ids, result.stdout.splitlines()[1:], strict=True):
            assert job_id in line  # the submission table
            self.check_job_id(str(job_id), array)
        for run_dir in project.run_dirs():
            out = RunDir(run_dir).job_stdout.read_text()
            config = project.config(run_dir)
            assert f"RUN committed {config['lr']} {config['seed']}" in out

    def test_sweep_as_one_array(self, project: ProjectDir) -> None:
        self._sweep(project, array=True)

    def test_sweep_as_separate_jobs(self, project: ProjectDir) -> None:
        self._sweep(project, "+mlxpy.scheduler.use_arrays=false", array=False)

    def test_failing_job(self, project: ProjectDir) -> None:
        assert project.run("mode=fail").returncode == 0
        (info,) = project.wait(1, self.timeout)
        assert info["status"] == FAILED
        assert info["error"]["message"] == "failing on purpose"
        status = project.mlxpy("status", "--format", "json")
        assert status.returncode == 0, status.stderr
        import json

        (row,) = json.loads(status.stdout)
        assert row["exit_code"] == 1 and row["status"] == FAILED

    def test_cancel(self, project: ProjectDir) -> None:
        assert project.run("mode=sleep", "sleep=120").returncode == 0
        (run_dir,) = project.run_dirs()
        deadline = time.monotonic() + self.timeout
        while project.info(run_dir)["status"] != RunStatus.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        cancelled = project.mlxpy("cancel", "1")
        assert cancelled.returncode == 0, cancelled.stderr
        import json

        deadline = time.monotonic() + self.timeout
        while True:  # the scheduler's view, reconciled with the run's own record
            status = project.mlxpy("status", "--format", "json")
            assert status.returncode == 0, status.stderr
            (row,) = json.loads(status.stdout)
            if row["status"] in (RunStatus.INTERRUPTED, RunStatus.CANCELLED):
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.5)

    def test_rejected_submission(self, project: ProjectDir) -> None:
        result = project.run(*self.rejected_override())
        assert result.returncode != 0
        assert "failed" in result.stderr
        (run_dir,) = project.run_dirs()
        assert project.info(run_dir)["status"] == RunStatus.SUBMIT_FAILED

    def rejected_override(self) -> list[str]:
        """An override that makes the scheduler refuse the job."""
        raise NotImplementedError

    def test_special_characters_reach_the_job(self, project: ProjectDir) -> None:
        value = 'say "hi", $HOME * `x` a,b; (c)'  # Hydra quoting, then shell quoting
        result = project.run(f"msg='{value}'")
        assert result.returncode == 0, result.stderr
        (info,) = project.wait(1, self.timeout)
        assert info["status"] == COMPLETE, info
        (run_dir,) = project.run_dirs()
        assert project.config(run_dir)["msg"] == value
        assert repr(value) in RunDir(run_dir).job_stdout.read_text()

    def test_version_manager_runs_the_snapshot(self, project: ProjectDir) -> None:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@e",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@e",
        }
        options = project.options()
        options["use_version_manager"] = True
        options["version_manager"] = {"name": "GitVM", "interactive_mode": False}
        project.write_config(options, OPTIONS_FILE)
        (project.root / ".gitignore").write_text("logs/\n")
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "first"]):
            subprocess.run(
                [*project.command_prefix, "git", "-C", str(project.root), *args],
                check=True,
                env={**os.environ, **env},
            )
        main = project.root / "main.py"
        main.write_text(main.read_text().replace('"committed"', '"edited"'))
        result = project.run()
        assert result.returncode == 0, result.stderr
        (info,) = project.wait(1, self.timeout)
        assert info["status"] == COMPLETE, info
        (run_dir,) = project.run_dirs()
        assert "RUN committed" in RunDir(run_dir).job_stdout.read_text()
        assert info["version_manager"]["dirty"] is True
        assert info["script_path"].startswith(info["version_manager"]["snapshot_path"])
        assert (RunDir(run_dir).metadata / PATCH_FILE).exists()


LOGGER_TASK = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    lg = ctx.logger
    state = lg.load_checkpoint() or {"step": 0}
    for step in range(state["step"], ctx.config.steps):
        lg.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
        lg.log_checkpoint({"step": step + 1})
    lg.log_metrics({"score": 0.5}, log_name="test")
    lg.log_artifacts({"answer": 42}, "result", "json")
    print("LOADED", lg.load_artifacts("result", "json"), flush=True)
    if ctx.config.fail:
        raise RuntimeError("asked to fail")

if __name__ == "__main__":
    task()
"""


class LoggerSuite:
    """Conformance tests for a logger: what DefaultLogger guarantees must still hold.
    Subclass it with ``logger_name`` and ``logger_settings``."""

    logger_name: str = "DefaultLogger"
    logger_settings: dict[str, Any] = {}
    env: dict[str, str] = {}

    @pytest.fixture
    def logged(self, tmp_path: Path) -> ProjectDir:
        project = ProjectDir(tmp_path / "proj", LOGGER_TASK)
        project.env = dict(self.env)
        project.write_config({"seed": 0, "steps": 5, "fail": False})
        project.write_config(
            {"logger": {"name": self.logger_name, **self.logger_settings}}, OPTIONS_FILE
        )
        return project

    def test_selected_by_name(self, logged: ProjectDir) -> None:
        result = logged.run()
        assert result.returncode == 0, result.stderr
        (run_dir,) = logged.run_dirs()
        assert logged.info(run_dir)["status"] == COMPLETE
        saved = yaml.safe_load(RunDir(run_dir).options.read_text())
        assert saved["logger"]["name"] == self.logger_name

    def test_metrics_artifacts_and_reader(self, logged: ProjectDir) -> None:
        from mlxpy.reading.reader import Reader
        from mlxpy.rundir.metrics import read_metrics

        assert logged.run().returncode == 0
        (run_dir,) = logged.run_dirs()
        records = read_metrics(RunDir(run_dir).metrics_file("train"))
        assert [r["step"] for r in records] == list(range(5))
        assert records[2]["loss"] == 1.0 / 3
        (row,) = Reader(logged.logs).filter(f"info.status == '{COMPLETE}'").to_dict("records")
        assert row["train.loss.last"] == 0.2 and row["test.score.last"] == 0.5
        assert "LOADED {'answer': 42}" in logged.run("+mlxpy.logger.forced_log_id=1").stdout

    def test_failure_and_resume(self, logged: ProjectDir) -> None:
        from mlxpy.rundir.metrics import read_metrics

        first = logged.run("fail=true", "steps=3")
        assert first.returncode == 1
        (run_dir,) = logged.run_dirs()
        assert logged.info(run_dir)["status"] == FAILED
        again = logged.run("+mlxpy.logger.forced_log_id=1", "steps=6")
        assert again.returncode == 0, again.stderr
        info = logged.info(run_dir)
        assert info["status"] == COMPLETE and info["restarts"] == 1
        steps = [r["step"] for r in read_metrics(RunDir(run_dir).metrics_file("train"))]
        assert steps == list(range(6))
