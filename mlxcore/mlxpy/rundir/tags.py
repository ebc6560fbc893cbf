"""A run's tags and notes: labels and free text people add to a run, during it
(``ctx.logger.add_tags``) or after it (``mlxpy tag``, ``mlxpy note``).

They live in their own files (``metadata/tags.json``, ``metadata/notes.md``), never in the run
info, so the run's own info writes cannot clobber a tag added from the terminal. Every change
is a read-modify-write under an exclusive ``flock`` on ``metadata/.tags.lock``, so concurrent
taggers (several terminals, the live run itself) never lose each other's updates, and the file
is replaced atomically, so a reader sees the old tags or the new ones.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from mlxpy.errors import LogDirError, MlxpyError
from mlxpy.rundir import safe
from mlxpy.rundir.atomic import atomic_write_bytes
from mlxpy.rundir.changes import note_change
from mlxpy.rundir.layout import RunDir

#: a tag: a letter, digit or ``_`` first (``+x``/``-x`` are the CLI's add/remove), then also
#: ``. : = / @ + -``; no spaces, so ``mlxpy tag 3 +good`` reads one way only
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:=/@+\-]{0,63}")
MAX_TAGS = 256
#: the Reader's column of each run's tags (a list; ``tags contains "good"``)
TAGS_COLUMN = "tags"
#: notes larger than this are not appended to (nor read whole)
MAX_NOTES_BYTES = 1024 * 1024


class TagError(MlxpyError, ValueError):
    """A tag is malformed, or a run's tags cannot be changed."""


def check_tag(tag: object) -> str:
    if not isinstance(tag, str) or TAG.fullmatch(tag) is None:
        raise TagError(
            f"{tag!r} is not a tag: a tag has 1 to 64 characters, letters, digits and "
            "_ . : = / @ + - (not first: + or -), no spaces"
        )
    return tag


def read_tags(run_dir: str | os.PathLike[str]) -> list[str]:
    """The run's tags, sorted; ``[]`` without a tags file. An unreadable or malformed file
    (a link, a FIFO, not a list of tags) reads as no tags: a reader never fails on it."""
    run = RunDir(Path(run_dir))
    try:
        data = json.loads(safe.read_bytes(run.tags, safe.MAX_METADATA_BYTES, run.root))
    except (OSError, ValueError, RecursionError):
        return []
    if not isinstance(data, list):
        return []
    return sorted({t for t in data if isinstance(t, str) and TAG.fullmatch(t)})


def _lock(run: RunDir) -> int:
    """An fd holding the run's tags lock (exclusive, waited for: changes are short)."""
    safe.check_inside(run.root, run.tags_lock)
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(run.tags_lock, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise safe.UnsafePathError(
                f"{run.tags_lock} is a symbolic link; mlxpy does not follow links inside a "
                "run directory (remove it)"
            ) from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def update_tags(
    run_dir: str | os.PathLike[str], add: Iterable[str] = (), remove: Iterable[str] = ()
) -> list[str]:
    """Add and remove tags of a run, under its tags lock; returns the tags now. Removing a
    tag the run does not have is no error."""
    run = RunDir(Path(run_dir))
    added, removed = [check_tag(t) for t in add], [check_tag(t) for t in remove]
    if not run.metadata.is_dir() or run.metadata.is_symlink():
        raise LogDirError(f"{run.root} is not a run directory (no {run.metadata.name}/ in it)")
    fd = _lock(run)
    try:
        tags = set(read_tags(run.root))
        before = set(tags)
        tags.update(added)
        tags.difference_update(removed)
        if len(tags) > MAX_TAGS:
            raise TagError(f"a run has at most {MAX_TAGS} tags; {run.root} would have {len(tags)}")
        if tags != before or not run.tags.exists():
            safe.check_inside(run.root, run.tags)
            data = json.dumps(sorted(tags), ensure_ascii=False).encode() + b"\n"
            atomic_write_bytes(run.tags, data, fsync=False)
            tell_readers(run)
        return sorted(tags)
    finally:
        os.close(fd)


def tell_readers(run: RunDir) -> None:
    """Make a change outside the run info visible to the Reader's index: the run's record
    (``metadata/run.json``, else ``info.yaml``) gets a new mtime, its content unchanged; the
    rename of the changed file also changes the metadata dir's mtime; and the parent's change
    journal names the run, so an index that no longer looks at finished runs reads it again."""
    note_change(run.root.parent, run.root.name)
    for path in (run.run_json, run.info):
        try:
            os.utime(path, follow_symlinks=False)
            return
        except FileNotFoundError:
            continue
        except OSError:  # another user's run: its metadata dir's mtime still changed
            return


def read_notes(run_dir: str | os.PathLike[str]) -> str:
    run = RunDir(Path(run_dir))
    try:
        return safe.read_bytes(run.notes, MAX_NOTES_BYTES, run.root).decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def append_note(run_dir: str | os.PathLike[str], text: str, stamp: str) -> str:
    """Append one note (a ``## <stamp>`` heading and the text) to the run's notes, under the
    tags lock, replacing the file atomically; returns the notes now."""
    run = RunDir(Path(run_dir))
    if not text.strip():
        raise TagError('a note needs some text: mlxpy note ID "what this run showed"')
    if not run.metadata.is_dir() or run.metadata.is_symlink():
        raise LogDirError(f"{run.root} is not a run directory (no {run.metadata.name}/ in it)")
    fd = _lock(run)
    try:
        notes = read_notes(run.root)
        notes = f"{notes.rstrip()}\n\n" if notes.strip() else ""
        notes += f"## {stamp}\n\n{text.strip()}\n"
        data = notes.encode("utf-8", "backslashreplace")
        if len(data) > MAX_NOTES_BYTES:
            raise TagError(f"the notes of {run.root} would exceed {MAX_NOTES_BYTES} bytes")
        safe.check_inside(run.root, run.notes)
        atomic_write_bytes(run.notes, data, fsync=False)
        tell_readers(run)
        return notes
    finally:
        os.close(fd)
