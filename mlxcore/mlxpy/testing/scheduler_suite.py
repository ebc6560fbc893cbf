""":class:`SchedulerSuite`: the conformance tests every scheduler (builtin or plugin) passes
against its real scheduler, through real launches and ``mlxpy status``/``mlxpy cancel``."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mlxpy.rundir.layout import OPTIONS_FILE, PATCH_FILE, RunDir
from mlxpy.rundir.status import RunStatus
from mlxpy.scheduling.base import JobPhase
from mlxpy.testing.project import COMPLETE, FAILED, ProjectDir


class SchedulerSuite:
    """Conformance tests for a scheduler, against the real scheduler.

    Subclass it in the plugin's tests, set ``scheduler_name`` (and ``scheduler_settings``),
    implement :meth:`rejected_override` and :meth:`pending_overrides`, and override
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

    def rejected_override(self) -> list[str]:
        """An override that makes the scheduler refuse the job."""
        raise NotImplementedError

    def pending_overrides(self) -> list[str]:
        """Overrides with which the **last** run of the launch stays queued until it is
        cancelled: a hold (``--hold``), or a sweep whose earlier runs fill every slot. The
        other runs of the launch, if any, are cancelled at the end of the test."""
        raise NotImplementedError

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

    def separate_jobs_overrides(self) -> list[str]:
        """Overrides with which a sweep goes as one job per run (none for a scheduler
        without arrays)."""
        return ["+mlxpy.scheduler.use_arrays=false"]

    def test_sweep_as_separate_jobs(self, project: ProjectDir) -> None:
        self._sweep(project, *self.separate_jobs_overrides(), array=False)

    def test_failing_job(self, project: ProjectDir) -> None:
        assert project.run("mode=fail").returncode == 0
        (info,) = project.wait(1, self.timeout)
        assert info["status"] == FAILED
        assert info["error"]["message"] == "failing on purpose"
        (row,) = project.status()
        assert row["exit_code"] == 1 and row["status"] == FAILED
        assert row["phase"] == JobPhase.DONE

    def test_cancel(self, project: ProjectDir) -> None:
        assert project.run("mode=sleep", "sleep=120").returncode == 0
        (run_dir,) = project.run_dirs()
        deadline = time.monotonic() + self.timeout
        while project.info(run_dir)["status"] != RunStatus.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        (row,) = project.status()
        assert row["phase"] == JobPhase.RUNNING, row
        cancelled = project.mlxpy("cancel", "1")
        assert cancelled.returncode == 0, cancelled.stderr
        deadline = time.monotonic() + self.timeout
        while True:  # the scheduler's view, reconciled with the run's own record
            (row,) = project.status()
            if row["status"] in (RunStatus.INTERRUPTED, RunStatus.CANCELLED):
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.5)

    def test_cancel_while_pending(self, project: ProjectDir) -> None:
        """A job cancelled before it starts: its run, still SUBMITTED, ends CANCELLED with
        the scheduler's word as its error, and the task never ran."""
        result = project.run("mode=sleep", "sleep=120", *self.pending_overrides())
        assert result.returncode == 0, result.stderr
        *others, pending = project.run_dirs()
        log_id = pending.name
        try:
            row = self._row(project, log_id)
            assert row["phase"] == JobPhase.QUEUED, row
            assert row["run_status"] == row["status"] == RunStatus.SUBMITTED, row
            cancelled = project.mlxpy("cancel", log_id)
            assert cancelled.returncode == 0, cancelled.stderr
            assert f"cancelled run {log_id}" in cancelled.stdout
            deadline = time.monotonic() + self.timeout
            while True:
                row = self._row(project, log_id)
                if row["phase"] == JobPhase.DONE:
                    break
                assert time.monotonic() < deadline, row
                time.sleep(0.5)
            assert row["status"] == RunStatus.CANCELLED, row
        finally:
            if others:  # the runs that filled the slots
                project.mlxpy("cancel", *(d.name for d in others))
        info = project.info(pending)  # `mlxpy status` recorded how it ended
        assert info["status"] == RunStatus.CANCELLED, info
        assert info["error"]["type"] == "JobEnded", info
        assert row["scheduler_state"] in info["error"]["message"], info
        job_stdout = RunDir(pending).job_stdout  # nothing ran: no output, no metrics
        assert not job_stdout.exists() or "RUN committed" not in job_stdout.read_text()
        assert not RunDir(pending).metrics_file("train").exists()

    @staticmethod
    def _row(project: ProjectDir, log_id: str) -> dict[str, Any]:
        (row,) = [r for r in project.status() if str(r["log_id"]) == log_id]
        return row

    def test_rejected_submission(self, project: ProjectDir) -> None:
        result = project.run(*self.rejected_override())
        assert result.returncode != 0
        assert "failed" in result.stderr
        (run_dir,) = project.run_dirs()
        assert project.info(run_dir)["status"] == RunStatus.SUBMIT_FAILED

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
