"""Version managers freeze the code a job runs; :class:`GitVM` is the builtin one."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError, MlxpyWarning
from mlxpy.hookspecs import hookimpl
from mlxpy.plugins.component import Component
from mlxpy.rundir.layout import METADATA_DIR, PATCH_FILE, REQUIREMENTS_FILE


class UncommittedWorkWarning(MlxpyWarning):
    """The launch runs the last commit; the working copy has changes it does not include."""


class VersionManager(Component):
    """Base of version managers, selected by ``version_manager.name`` in ``mlxpy.yaml``."""

    role = "version_manager"

    info: dict[str, Any]
    run_files: dict[str, str]

    @abstractmethod
    def make_working_directory(self, script_path: str, ignore: Sequence[str] = ()) -> str:
        """Freeze the code; return the path of ``script_path``'s copy in the frozen tree.

        Also set ``self.info`` (recorded as ``info.version_manager`` of each run) and
        ``self.run_files`` (``{file name: text}`` saved in each run's ``metadata/``).
        ``ignore`` lists directories (logs) that are not the user's code.
        """


def requirements_text() -> str:
    """The environment as a requirements file: Python version, then ``name==version``."""
    import importlib_metadata as metadata

    lines = {
        f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]
    }
    header = f"# Python {sys.version.split()[0]} ({sys.executable})\n"
    return header + "\n".join(sorted(lines, key=str.lower)) + "\n"


class GitVM(VersionManager):
    """Runs jobs from a snapshot of the latest git commit, so edits made after the launch
    never change what a job runs, and records exactly which code that was."""

    name = "GitVM"

    def __init__(
        self,
        parent_target_work_dir: str = "./.workdir",
        skip_requirements: bool = False,
        interactive_mode: bool = True,
        require_clean: bool = False,
    ) -> None:
        self.parent_target_work_dir = parent_target_work_dir
        self.skip_requirements = skip_requirements
        self.interactive_mode = interactive_mode
        self.require_clean = require_clean
        self.info = {}
        self.run_files = {}

    def _open_repo(self, script: Path) -> Any:
        import git

        try:
            repo = git.Repo(script.parent, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise MlxpyError(
                f"GitVM: {script} is not inside a git repository. Run 'git init' and commit your "
                "code, or turn the version manager off: use_version_manager: false in "
                "mlxpy.yaml, or +mlxpy.use_version_manager=false on the command line."
            ) from None
        if not repo.head.is_valid():
            raise MlxpyError(
                f"GitVM: the repository {repo.working_tree_dir} has no commit yet; commit your "
                "code first, or set use_version_manager: false."
            )
        return repo

    def make_working_directory(self, script_path: str, ignore: Sequence[str] = ()) -> str:
        from mlxpy.versioning.git_snapshot import build_snapshot

        script = Path(script_path).resolve()
        repo = self._open_repo(script)
        root = Path(repo.working_tree_dir).resolve()
        work_parent = Path(os.path.expanduser(self.parent_target_work_dir))
        if not work_parent.is_absolute():
            work_parent = script.parent / work_parent
        work_parent = work_parent.resolve()
        skip = [work_parent, *(Path(p).resolve() for p in ignore)]
        changed, untracked = self._pending_work(repo, root, skip)
        if changed or untracked:
            self._settle(repo, changed, untracked)
            changed, untracked = self._pending_work(repo, root, skip)
        sha = repo.head.commit.hexsha
        patch = self._patch(repo, untracked) if changed or untracked else ""
        snapshot = build_snapshot(repo, sha, work_parent, skip)
        relative = script.relative_to(root)
        self.info = {
            "name": self.name,
            "commit": sha,
            "branch": None if repo.head.is_detached else repo.active_branch.name,
            "remote_url": next((r.url for r in repo.remotes), None),
            "repo_path": str(root),
            "snapshot_path": str(snapshot),
            "script": str(relative),
            "dirty": bool(changed),
            "changed_files": changed,
            "untracked_files": untracked,
        }
        self.run_files = {}
        if patch:
            self.run_files[PATCH_FILE] = patch
        if not self.skip_requirements:
            self.run_files[REQUIREMENTS_FILE] = requirements_text()
        return str(snapshot / relative)

    @staticmethod
    def _pending_work(repo: Any, root: Path, skip: list[Path]) -> tuple[list[str], list[str]]:
        def keep(name: str) -> bool:
            path = (root / name).resolve()
            return not any(path.is_relative_to(s) for s in skip)

        changed = sorted(
            {d.a_path or d.b_path for d in repo.index.diff(None)}
            | {d.a_path or d.b_path for d in repo.index.diff("HEAD")}
        )
        untracked = sorted(name for name in repo.untracked_files if keep(name))
        return [name for name in changed if keep(name)], untracked

    def _settle(self, repo: Any, changed: list[str], untracked: list[str]) -> None:
        """Ask (on a terminal) or warn/refuse (otherwise) about uncommitted work."""
        from mlxpy.versioning import prompts

        if self.interactive_mode and sys.stdin is not None and sys.stdin.isatty():
            to_add = prompts.choose_untracked(untracked) if untracked else []
            if changed or to_add:
                if prompts.choose_changes(changed + to_add) == "commit":
                    self._commit(repo, to_add)
            return
        listing = ", ".join(changed + untracked)
        if self.require_clean:
            raise MlxpyError(
                f"GitVM: the working copy is not clean (require_clean: true): {listing}. "
                "Commit or stash these files, or set version_manager.require_clean: false."
            )
        warnings.warn(
            "GitVM runs the last commit; these uncommitted files are not in it (their diff is "
            f"saved as {METADATA_DIR}/{PATCH_FILE} in each run): {listing}",
            UncommittedWorkWarning,
            stacklevel=2,
        )

    @staticmethod
    def _commit(repo: Any, to_add: list[str]) -> None:
        import git

        try:
            repo.git.add("--update")
            if to_add:
                repo.git.add("--", *to_add)
            repo.git.commit("-m", "mlxpy: automatic commit before launch")
        except git.GitCommandError as exc:
            raise MlxpyError(f"GitVM: the automatic commit failed: {exc.stderr.strip()}") from exc

    @staticmethod
    def _patch(repo: Any, untracked: list[str]) -> str:
        """``git diff HEAD`` plus the content of untracked files, so nothing is lost."""
        parts = [repo.git.diff("HEAD", "--binary")]
        root = repo.working_tree_dir
        for name in untracked:
            if os.path.getsize(os.path.join(root, name)) > 1_000_000:
                parts.append(f"# untracked file {name} is larger than 1 MB: not included")
                continue
            out = subprocess.run(
                ["git", "-C", root, "diff", "--no-index", "--binary", "/dev/null", name],
                capture_output=True,
                text=True,
            )
            parts.append(out.stdout)
        return "\n".join(p.rstrip("\n") for p in parts if p) + "\n"


@hookimpl
def mlxpy_register_version_managers() -> list[type]:
    """The builtin's registration, as a plugin's ``plugin.py`` would write it."""
    return [GitVM]
