"""The composed ``config.yaml`` of a plain launch (no overrides), kept between launches.

Composing through Hydra costs more than the rest of a trivial launch (importing Hydra,
building the defaults list). Its result depends on the files of the config dir alone, so it
is kept, as JSON (never a pickle), under the user's cache dir, keyed on the path and content
(a SHA-256) of every file and dir under the config dir, and on the versions of mlxpy, Hydra
and Python. A config that Hydra reads from elsewhere too (a ``hydra:`` block, a search path) or
whose values are interpolations (a resolver may say something else next time) is not kept.
Any doubt (a missing, unreadable, foreign or stale entry) means composing as usual.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from mlxpy._version import __version__
from mlxpy.rundir import codec
from mlxpy.rundir.atomic import atomic_write_text

FORMAT = 1
#: an entry larger than this is not read (a config is small; the file is not ours then)
MAX_ENTRY_BYTES = 4 * 1024 * 1024
#: a config dir with more entries, or a larger file, is not keyed (reading it would cost the gain)
MAX_FILES = 256
MAX_FILE_BYTES = 1024 * 1024


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlxpy" / "compose"


def _hydra_stamp() -> list[Any] | None:
    """Hydra's version without importing it: its package file's path, size and mtime."""
    spec = importlib.util.find_spec("hydra")
    if spec is None or not spec.origin:
        return None
    st = os.stat(spec.origin)
    return [spec.origin, st.st_size, st.st_mtime_ns]


def cache_key(config_dir: Path) -> list[Any] | None:
    """What the composition depends on, or None when the dir is not one to key."""
    entries: list[Any] = []
    for root, dirs, files in os.walk(config_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted([*files, *dirs]):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            entry: list[Any] = [os.path.relpath(path, config_dir)]
            if name in files:  # its content, not its mtime (coarse on some file systems)
                try:
                    with open(path, "rb") as handle:
                        data = handle.read(MAX_FILE_BYTES + 1)
                except OSError:
                    return None
                if len(data) > MAX_FILE_BYTES:
                    return None
                entry.append(hashlib.sha256(data).hexdigest())
            entries.append(entry)
            if len(entries) > MAX_FILES:
                return None
    hydra = _hydra_stamp()
    if hydra is None:
        return None
    version = list(sys.version_info[:3])
    return [FORMAT, str(config_dir), __version__, version, hydra, entries]


def _entry_path(config_dir: Path) -> Path:
    digest = hashlib.sha256(str(config_dir).encode()).hexdigest()[:32]
    return cache_dir() / f"{digest}.json"


def load(config_dir: Path, key: list[Any]) -> dict[str, Any] | None:
    """The composed config kept for ``key``, or None."""
    path = _entry_path(config_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_size > MAX_ENTRY_BYTES:
            return None  # not written by this user
        entry = codec.decode(os.read(fd, MAX_ENTRY_BYTES + 1))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    config = entry.get("config")
    return config if isinstance(config, dict) else None


def keepable(config: Any, raw_file: Any) -> bool:
    """Whether a composition can be kept: no ``hydra:`` block in the file, and no
    interpolation in its values."""
    if isinstance(raw_file, dict) and "hydra" in raw_file:
        return False
    try:
        blob = codec.encode(config)
        # what JSON cannot tell apart (int keys, NaN) is not kept
        return b"${" not in blob and codec.decode(blob) == config
    except (TypeError, ValueError):
        return False


def store(config_dir: Path, key: list[Any], config: dict[str, Any]) -> None:
    """Keep the composed config; a cache that cannot be written is no error."""
    path = _entry_path(config_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = codec.encode({"key": key, "config": config}).decode()
        atomic_write_text(path, text, fsync=False)
    except (OSError, ValueError, TypeError):
        pass
