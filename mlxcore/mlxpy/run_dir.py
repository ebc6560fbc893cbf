"""Claiming a run directory (new or resumed), keeping it to one live process, and the
history a resumed run carries forward."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import yaml

from mlxpy.errors import LogDirError

LOCK_FILE = ".lock"


def claim_new(parent: Path) -> tuple[int, Path]:
    """The next free integer id, claimed by an exclusive ``mkdir``: two launches can never
    get the same dir, and a collision costs one more ``mkdir``, never a sleep."""
    candidate = 1 + max(
        (int(e.name) for e in os.scandir(parent) if e.name.isdigit() and e.is_dir()),
        default=0,
    )
    while True:
        try:
            (parent / str(candidate)).mkdir()
            return candidate, parent / str(candidate)
        except FileExistsError:
            candidate += 1


class RunLock:
    """An exclusive ``flock`` held while the run lives; the kernel drops it when the process
    dies, even by ``kill -9``, so it tells live runs from dead ones."""

    def __init__(self, metadata_dir: Path) -> None:
        self.path = metadata_dir / LOCK_FILE
        self.fd = -1

    def acquire(self, log_id: Any) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            self.fd = -1
            raise LogDirError(
                f"run {log_id} is in use by a live process ({owner}); wait for it to end or "
                "choose another logger.forced_log_id"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def carry_history(previous: dict[str, Any], info: dict[str, Any]) -> None:
    """Put the earlier attempts of a resumed run into ``info``."""
    earlier = list(previous.get("history") or [])
    attempt = {
        key: previous.get(key) for key in ("start_time", "end_time", "status", "hostname", "pid")
    }
    job_id = (previous.get("scheduler") or {}).get("job_id")
    if job_id is not None:  # which scheduler job each attempt ran in
        attempt["job_id"] = job_id
    if previous.get("requeued"):
        attempt["requeued"] = True
    earlier.append(attempt)
    info["restarts"] = int(previous.get("restarts") or 0) + 1
    info["history"] = earlier


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable differences between the config a run had and the one it resumes with."""
    before, after = flatten(old or {}), flatten(new or {})
    changes = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            changes.append(f"{key}: {before[key]!r} -> (removed)")
        elif key not in before:
            changes.append(f"{key}: (new) -> {after[key]!r}")
        elif before[key] != after[key]:
            changes.append(f"{key}: {before[key]!r} -> {after[key]!r}")
    return changes


def remove_stale_temps(root: Path) -> None:
    """Delete temp files left by a killed writer (``.<name>.<hex>.tmp<ext>``). Called while
    holding the run's lock, so no live writer owns them."""
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            if filename.startswith(".") and ".tmp" in filename:
                try:
                    os.unlink(os.path.join(dirpath, filename))
                except OSError:
                    pass
