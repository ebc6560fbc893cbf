"""Moving runs out of the way: archive (``<parent>/.archive/<id>-<uid>/``, hidden from the
Reader, restorable) and remove (deleted for good, only when the user confirms).

A live run is never moved or deleted: its lock is taken first (the kernel holds it for a live
process, so taking it proves none is there, and keeps one from starting meanwhile). Nothing
here follows a symbolic link: a link in a shared logs dir is refused, never resolved.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlxpy.errors import LogDirError
from mlxpy.rundir import claim
from mlxpy.rundir.info import read_info
from mlxpy.rundir.layout import ARCHIVE_DIR, RunDir, is_run_id
from mlxpy.rundir.status import RunStatus

#: ``<id>-<uid>``: an archived run's name (``<id>-archived`` when the run had no uid)
_ARCHIVED = re.compile(r"(?P<id>0|[1-9][0-9]{0,17})-(?P<uid>[0-9a-f-]{36}|archived)(\.\d+)?")


@dataclass(frozen=True)
class Archived:
    """A run in ``.archive/``: its name there, its former id and its directory."""

    name: str
    log_id: int
    path: Path


def run_dir(parent: Path, log_id: str) -> RunDir:
    """The run dir ``log_id`` of ``parent``, refused unless it is a real directory."""
    parent = Path(parent)
    if not parent.is_dir():
        raise LogDirError(f"no log directory at {parent}")
    path = parent / str(log_id)
    if not is_run_id(str(log_id)):
        raise LogDirError(f"{log_id!r} is not a run id (run ids are 1, 2, ...)")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise LogDirError(f"no run {log_id} in {parent} (see mlxpy runs {parent})") from None
    if stat.S_ISLNK(mode):
        raise LogDirError(f"{path} is a symbolic link, not a run dir; mlxpy does not follow it")
    if not stat.S_ISDIR(mode):
        raise LogDirError(f"{path} is not a run directory")
    return RunDir(path)


def live_reason(run: RunDir) -> str | None:
    """Why a run must not be moved now (a live process, a job waiting to start), or None."""
    if claim.is_locked(run.lock):
        return "it is running (a live process holds its lock)"
    ranks = run.ranks
    if ranks.is_dir() and not ranks.is_symlink():
        for entry in sorted(os.listdir(ranks))[:4096]:
            if is_run_id(entry) and claim.is_locked(run.rank(int(entry)).lock):
                return f"its rank {entry} is running"
    info = read_info(run.root) or {}
    if info.get("status") == RunStatus.SUBMITTED:
        job = (info.get("scheduler") or {}).get("job_id")
        return f"it is submitted (job {job}) and waits to start; cancel it first (mlxpy cancel)"
    return None


@contextmanager
def held(run: RunDir, log_id: Any, force: bool = False) -> Any:
    """Hold the run's lock (so no process starts it) while it is moved; refuse a live run,
    or a submitted one unless ``force``."""
    reason = live_reason(run)
    if reason is not None and (not force or "running" in reason):
        raise LogDirError(f"run {log_id} is not moved: {reason}")
    lock = claim.RunLock(run.lock)
    if run.metadata.is_dir() and not run.metadata.is_symlink():
        lock.acquire(log_id)  # a live process: LogDirError, nothing moved
    try:
        yield
    finally:
        lock.release()


def _archive_root(parent: Path) -> Path:
    root = Path(parent) / ARCHIVE_DIR
    try:
        root.mkdir()
    except FileExistsError:
        pass
    if root.is_symlink() or not root.is_dir():
        raise LogDirError(f"{root} is not a directory (a link?); move it away to archive runs")
    return root


def _uid(run: RunDir) -> str:
    uid = (read_info(run.root) or {}).get("uid")
    try:
        return str(uuid.UUID(str(uid)))
    except ValueError:
        return "archived"


def rename_noreplace(source: Path, target: Path) -> None:
    """Rename, failing with FileExistsError if ``target`` exists (``os.rename`` would replace
    an empty directory: a run dir a launch just claimed). Linux's renameat2; elsewhere a
    check then a rename."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.rename(source, target)
        return
    at_fdcwd, noreplace = -100, 1
    if renameat2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), noreplace) != 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EINVAL):  # an old kernel or a filesystem without it
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, "exists", str(target))
            os.rename(source, target)
            return
        raise OSError(code, os.strerror(code), str(target))


def archive_run(parent: Path, log_id: str, force: bool = False) -> Path:
    """Move run ``log_id`` to ``<parent>/.archive/<id>-<uid>/``; returns where it went."""
    run = run_dir(parent, log_id)
    with held(run, log_id, force):
        root = _archive_root(Path(parent))
        base = f"{log_id}-{_uid(run)}"
        for n in range(1000):
            target = root / (base if n == 0 else f"{base}.{n}")
            try:
                rename_noreplace(run.root, target)
                return target
            except FileExistsError:
                continue
        raise LogDirError(f"cannot archive run {log_id}: {root} has too many copies of it")


def archived_runs(parent: Path) -> list[Archived]:
    """The runs in ``<parent>/.archive/``, by id then name."""
    root = Path(parent) / ARCHIVE_DIR
    if root.is_symlink() or not root.is_dir():
        return []
    found = []
    for entry in os.scandir(root):
        match = _ARCHIVED.fullmatch(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            found.append(Archived(entry.name, int(match["id"]), Path(entry.path)))
    return sorted(found, key=lambda a: (a.log_id, a.name))


def restore_run(parent: Path, name: str) -> tuple[Archived, Path]:
    """Move an archived run (``<id>`` or ``<id>-<uid>``) back to ``<parent>/<id>/``."""
    runs = archived_runs(parent)
    matches = [a for a in runs if a.name == name] or [a for a in runs if str(a.log_id) == name]
    if not matches:
        raise LogDirError(
            f"no archived run {name} in {Path(parent) / ARCHIVE_DIR} "
            "(mlxpy restore with no id lists them)"
        )
    if len(matches) > 1:
        names = ", ".join(a.name for a in matches)
        raise LogDirError(f"{len(matches)} archived runs have id {name}: {names}; name one")
    found = matches[0]
    target = Path(parent) / str(found.log_id)
    try:
        rename_noreplace(found.path, target)
    except FileExistsError:
        raise LogDirError(
            f"cannot restore {found.name}: run id {found.log_id} is taken by another run in "
            f"{parent}; archive that one first (mlxpy archive {found.log_id})"
        ) from None
    return found, target


def remove_run(parent: Path, log_id: str, force: bool = False) -> None:
    """Delete run ``log_id`` for good: first renamed out of sight (the Reader never sees half
    a run), then removed (``shutil.rmtree`` does not follow links)."""
    run = run_dir(parent, log_id)
    with held(run, log_id, force):
        root = _archive_root(Path(parent))
        doomed = root / f".removing-{log_id}-{secrets.token_hex(4)}"
        os.rename(run.root, doomed)
    shutil.rmtree(doomed)
