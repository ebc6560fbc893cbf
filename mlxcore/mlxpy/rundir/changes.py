"""The parent log dir's change journal, ``.mlxpy-changes``: one line per run id whose run
changed after it had ended (a resume, a requeue, a tag), appended with one ``O_APPEND``
write. Readers re-check finished runs only when a line names them (new and deleted runs show
in the parent dir's listing), so opening a large store does not look at every run.

It is a hint, read as untrusted input: bounded, never through a link, lines that are not run
ids ignored. A journal replaced or truncated makes readers check every run once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mlxpy.rundir.layout import CHANGES_FILE, is_run_id

#: a reader reads at most this much of the journal at once; more makes it check every run
MAX_UNREAD_BYTES = 1024 * 1024


def note_change(parent: Path, log_id: int | str) -> None:
    """Tell readers that run ``log_id`` of ``parent`` changed. Never raises: the journal is
    a hint (a read-only parent dir has no readers' index beside it to keep either)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(Path(parent) / CHANGES_FILE, flags, 0o666)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.write(fd, f"{int(log_id)}\n".encode())
    except (OSError, ValueError):
        pass
    finally:
        os.close(fd)


def read_changes(parent: Path, since: str | None) -> tuple[set[str] | None, str]:
    """The run ids journaled since ``since`` (what the last call returned; None for never,
    ``""`` for no journal then), and the mark to pass next time. None in place of the ids:
    the journal was replaced, truncated or has too much unread, so every run must be
    checked."""
    path = Path(parent) / CHANGES_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return (None if since is None else set()), ""
    except OSError:
        return set(), since or ""  # a link or unreadable: no hint taken from it
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return set(), since or ""
        current = f"{info.st_dev}.{info.st_ino}"
        if since is None:  # the first look: the caller checks every run anyway
            return None, f"{current}:{info.st_size}"
        identity, _, offset_text = since.partition(":")
        if not since:  # made since the last look: all of it is new
            identity, offset_text = current, "0"
        offset = int(offset_text) if offset_text.isdigit() else 0
        if identity != current or info.st_size < offset:
            return None, f"{current}:{info.st_size}"
        if info.st_size - offset > MAX_UNREAD_BYTES:
            return None, f"{identity}:{info.st_size}"
        data = os.pread(fd, info.st_size - offset, offset)
    finally:
        os.close(fd)
    end = data.rfind(b"\n") + 1  # a line being written is read next time
    ids = {line for line in data[:end].decode("ascii", "replace").split("\n") if is_run_id(line)}
    return ids, f"{identity}:{offset + end}"
