""":class:`VersionManagerSuite`: the ``VersionManager`` contract, on real git repositories in
temp dirs: a launch runs a frozen copy of the code, later edits never reach it, and each run
records which code it was."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from mlxpy.rundir.layout import OPTIONS_FILE, RunDir
from mlxpy.testing.project import COMPLETE, SUITE_TASK, ProjectDir

GIT_ENV = {
    "GIT_AUTHOR_NAME": "mlxpy suite",
    "GIT_AUTHOR_EMAIL": "suite@example.com",
    "GIT_COMMITTER_NAME": "mlxpy suite",
    "GIT_COMMITTER_EMAIL": "suite@example.com",
}


def git(project: ProjectDir, *args: str) -> str:
    """Run git in the project (as the project's user), with a fixed identity."""
    return subprocess.run(
        [*project.command_prefix, "git", "-C", str(project.root), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


class VersionManagerSuite:
    """Conformance tests for a version manager. Subclass it with ``version_manager_name``
    and ``version_manager_settings`` (non-interactive: the tests have no terminal)."""

    version_manager_name: str = "GitVM"
    version_manager_settings: dict[str, Any] = {}

    def prepare_repo(self, project: ProjectDir) -> None:
        """Adjust the committed project before the tests use it (remotes, hooks, users)."""

    @pytest.fixture
    def repo(self, tmp_path: Path) -> ProjectDir:
        """A project whose code is committed in a fresh git repository, logs ignored, with
        the version manager selected by name."""
        project = ProjectDir(tmp_path / "proj", SUITE_TASK)
        project.env = dict(GIT_ENV)
        project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
        project.write_config(
            {
                "version_manager": {
                    "name": self.version_manager_name,
                    **self.version_manager_settings,
                },
                "use_version_manager": True,
            },
            OPTIONS_FILE,
        )
        (project.root / ".gitignore").write_text("logs/\n")
        git(project, "init", "-q")
        git(project, "add", "-A")
        git(project, "commit", "-qm", "first")
        self.prepare_repo(project)
        return project

    def build(self) -> Any:
        """The version manager, built by name and settings as a launch builds it."""
        from mlxpy.plugins import get_plugins
        from mlxpy.plugins.component import build_component

        cls = get_plugins().resolve("version_manager", self.version_manager_name)
        settings = dict(self.version_manager_settings)
        return build_component(cls, "version_manager", settings, lambda key: "the suite")

    @staticmethod
    def info(project: ProjectDir) -> dict[str, Any]:
        (run_dir,) = project.run_dirs()
        return project.info(run_dir)

    def test_launch_runs_a_frozen_copy(self, repo: ProjectDir) -> None:
        result = repo.run("seed=3")
        assert result.returncode == 0, result.stderr
        assert "RUN committed 0.1 3" in result.stdout
        info = self.info(repo)
        assert info["status"] == COMPLETE
        frozen = Path(info["script_path"])
        assert frozen != repo.root / "main.py" and frozen.name == "main.py"
        assert frozen.read_text() == (repo.root / "main.py").read_text()
        recorded = info["version_manager"]
        assert isinstance(recorded, dict) and recorded  # which code ran, for the reader
        assert recorded.get("commit") in (None, git(repo, "rev-parse", "HEAD"))

    def test_edits_after_the_launch_never_reach_the_job(self, repo: ProjectDir) -> None:
        manager = self.build()
        main = repo.root / "main.py"
        copy = Path(manager.make_working_directory(str(main), ignore=[str(repo.logs)]))
        assert copy.is_file() and copy != main
        main.write_text(main.read_text().replace('"committed"', '"edited later"'))
        assert '"committed"' in copy.read_text()
        assert isinstance(manager.info, dict) and manager.info
        assert isinstance(manager.run_files, dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in manager.run_files.items())

    def test_ignored_dirs_stay_out_of_the_copy(self, repo: ProjectDir) -> None:
        (repo.root / ".gitignore").write_text("")  # logs is not ignored by git any more
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "track everything")
        repo.logs.mkdir()
        (repo.logs / "old-run.txt").write_text("not code")
        manager = self.build()
        copy = Path(manager.make_working_directory(str(repo.root / "main.py"), [str(repo.logs)]))
        assert not (copy.parent / "logs").exists()
        assert "old-run.txt" not in str(manager.info)  # not reported as uncommitted work

    def test_each_run_saves_its_run_files(self, repo: ProjectDir) -> None:
        main = repo.root / "main.py"
        main.write_text(main.read_text().replace('"committed"', '"uncommitted"'))
        result = repo.run()
        assert result.returncode == 0, result.stderr
        (run_dir,) = repo.run_dirs()
        manager = self.build()
        with warnings.catch_warnings():  # a manager may warn of the edit: the run did
            warnings.simplefilter("ignore")
            manager.make_working_directory(str(main), ignore=[str(repo.logs)])
        for name in manager.run_files:  # what the manager says to keep, each run keeps
            assert (RunDir(run_dir).metadata / name).is_file(), name
        assert self.info(repo)["status"] == COMPLETE
