"""The one way a run directory's files are replaced: write a temp file beside the target,
then rename, so a reader (or a killed writer) never sees half a file under the final name."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mlxpy.rundir.layout import temp_name


def temp_path(path: Path) -> Path:
    return path.parent / temp_name(path.name, secrets.token_hex(6))


def atomic_write(
    path: Path, write: Callable[[str], Any], fsync: bool = True, sync_dir: bool = False
) -> None:
    """Call ``write(temp)`` to fill a temp file beside ``path``, then rename it onto ``path``.

    ``fsync`` makes the content durable before the rename; ``sync_dir`` the rename itself.
    On any error (or signal) the temp file is removed and the old ``path`` is untouched.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(str(tmp))
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _exclusive_writer(data: bytes) -> Callable[[str], None]:
    def write(tmp: str) -> None:
        # O_EXCL: never write through a file (or symlink) planted under the temp name;
        # mode subject to umask (mkstemp would make it 0600)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    return write


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    atomic_write(path, _exclusive_writer(data), fsync=fsync)


def atomic_write_text(path: Path, text: str, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"), fsync=fsync)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Safe YAML that writes str subclasses (RunStatus) and tuples as plain values; emitted
    by libyaml when PyYAML has it (a run's files are written several times per submission:
    the pure-Python emitter dominated the submission of a large sweep)."""


_Dumper.add_multi_representer(str, lambda d, v: d.represent_str(str(v)))
_Dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))


def dump_yaml(data: Any) -> str:
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def atomic_write_yaml(path: Path, data: Any) -> None:
    """Metadata: atomic (rename) but not fsynced; a killed process never leaves half a file,
    and run files are rewritten often enough that an fsync each time would dominate."""
    atomic_write_text(path, dump_yaml(data), fsync=False)


def create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` unless it exists; safe when many processes race, and no
    reader ever sees it empty (the full temp file is hard-linked into place).

    Returns True if this call created it.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        _exclusive_writer(text.encode())(str(tmp))
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:  # the temp file was never made
            pass
