"""Small file helpers shared by the writers of run directories."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import yaml


def atomic_write_text(path: Path, text: str, fsync: bool = True) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    The temp file sits in the same directory (same file system) and keeps the final suffix.
    """
    path = Path(path)
    fd, tmp = _open_temp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _open_temp(path: Path) -> tuple[int, str]:
    """A new hidden temp file beside ``path`` with the same suffix, mode subject to umask
    (``mkstemp`` would make it 0600)."""
    while True:
        tmp = str(path.parent / f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def atomic_write_yaml(path: Path, data: Any) -> None:
    """Metadata: atomic (rename) but not fsynced; a killed process never leaves half a file,
    and run files are rewritten often enough that an fsync each time would dominate."""
    atomic_write_text(path, dump_yaml(data), fsync=False)


def create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` unless it exists; safe when many processes race.

    Returns True if this call created it.
    """
    path = Path(path)
    tmp_fd, tmp = _open_temp(path)
    with os.fdopen(tmp_fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    try:
        os.link(tmp, path)  # atomic, fails if path exists: no reader sees an empty file
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
