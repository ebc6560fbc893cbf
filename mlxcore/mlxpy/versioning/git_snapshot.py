"""Frozen copies of a git commit: ``<parent>/<repo name>/<sha>/``, built once, atomically,
safely when many launches race, and reused afterwards."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mlxpy.errors import MlxpyError

MARKER = ".mlxpy-snapshot"


def _archive_into(repo_dir: Path, sha: str, target: Path) -> None:
    """Extract the tree of ``sha`` (no .git) into ``target`` with git archive | tar."""
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(
        ["git", "-C", str(repo_dir), "archive", "--format=tar", sha],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    untar = subprocess.run(
        ["tar", "-x", "-C", str(target)], stdin=archive.stdout, capture_output=True
    )
    assert archive.stdout is not None
    archive.stdout.close()
    err = archive.stderr.read().decode(errors="replace") if archive.stderr else ""
    if archive.wait() != 0 or untar.returncode != 0:
        raise MlxpyError(
            f"cannot export commit {sha} of {repo_dir}: "
            f"{err.strip() or untar.stderr.decode(errors='replace').strip()}"
        )


def _export_tree(repo: Any, sha: str, target: Path) -> None:
    """The commit's tree, and recursively each submodule at the commit the tree records."""
    _archive_into(Path(repo.working_tree_dir), sha, target)
    commit = repo.commit(sha)
    for item in commit.tree.traverse():
        if item.type != "submodule":
            continue
        sub_dir = Path(repo.working_tree_dir) / item.path
        try:
            import git

            sub_repo = git.Repo(sub_dir)
        except Exception as exc:
            raise MlxpyError(
                f"submodule '{item.path}' of {repo.working_tree_dir} is not checked out; run "
                "'git submodule update --init --recursive' before launching"
            ) from exc
        _export_tree(sub_repo, item.hexsha, target / item.path)


def build_snapshot(repo: Any, sha: str, parent: Path, exclude: list[Path]) -> Path:
    """Return ``parent/<repo name>/<sha>``, creating it if needed.

    Built in a temp dir and renamed into place, under a per-commit ``flock`` so concurrent
    launches build it once and never see half a copy; the marker file proves completeness.
    """
    repo_root = Path(repo.working_tree_dir)
    base = parent / repo_root.name
    final = base / sha
    if (final / MARKER).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    ignore_file = parent / ".gitignore"
    if not ignore_file.exists():  # snapshots are not the user's work: keep git status clean
        ignore_file.write_text("# created by mlxpy: code snapshots, not to be committed\n*\n")
    lock_fd = os.open(base / f".{sha}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if (final / MARKER).is_file():  # another launch built it while we waited
            return final
        if final.exists():  # an incomplete copy from a crashed build: never use it
            shutil.rmtree(final)
        tmp = base / f".{sha}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()  # mode 0777 less umask, unlike mkdtemp's 0700: others may read the code
        try:
            _export_tree(repo, sha, tmp)
            for path in exclude:  # committed copies of work or log dirs: no nesting
                inside = path.resolve()
                if inside.is_relative_to(repo_root.resolve()):
                    nested = tmp / inside.relative_to(repo_root.resolve())
                    if nested.exists() and nested != tmp:
                        shutil.rmtree(nested)
            (tmp / MARKER).write_text(f"{sha}\n")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        os.close(lock_fd)
    return final
