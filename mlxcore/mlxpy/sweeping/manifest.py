"""A sweep's record under its parent log dir: ``.sweeps/<sweep_id>/``.

``sweep.json`` (the manifest) is written atomically by the launching process: once when the
sweep is planned, again when its jobs are submitted (their ids). It holds the command, the
sweeper and scheduler that ran it, and every planned point's overrides.

``points.jsonl`` (the journal) gets one line per run a point started, appended by the process
that claimed the run dir (the launching process, a scheduled job, an adaptive sweeper's
worker): O(1) per point whatever the sweep's size, and safe with concurrent writers (one
``O_APPEND`` write of a short line each). The latest line of a point names its run.

Both are read as untrusted input: bounded in size, parsed as JSON only, every field checked;
a malformed journal line is skipped, not fatal.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlxpy.errors import MlxpyError
from mlxpy.rundir.atomic import atomic_write
from mlxpy.rundir.safe import UnsafePathError, check_inside, open_regular, read_bytes

SWEEPS_DIR = ".sweeps"
MANIFEST_FILE = "sweep.json"
JOURNAL_FILE = "points.jsonl"
#: bumped when a field changes meaning; a reader refuses a manifest of another format
MANIFEST_FORMAT = 1
SWEEP_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
#: a manifest larger than this is not read (5,000 points take about 1 MiB)
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
#: a journal larger than this is not read (a line is about 70 bytes: ~900,000 runs)
MAX_JOURNAL_BYTES = 64 * 1024 * 1024


class SweepError(MlxpyError):
    """A sweep's record is missing, unreadable or malformed, or names no such point."""


def new_sweep_id() -> str:
    """Time-ordered and unique: ``20261201-171300-a1b2c3``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def sweep_dir(parent_log_dir: Path, sweep_id: str) -> Path:
    if not SWEEP_ID.fullmatch(sweep_id):
        raise SweepError(
            f"{sweep_id!r} is not a sweep id (they look like 20261201-171300-a1b2c3); "
            f"list the sweeps with: mlxpy sweeps {parent_log_dir}"
        )
    folder = Path(parent_log_dir) / SWEEPS_DIR / sweep_id
    _check_real_dirs(Path(parent_log_dir), folder)
    return folder


def sweep_path(parent_log_dir: Path, sweep_id: str, *parts: str) -> Path:
    """A path in a sweep's folder (``parts`` below it), refused if any directory on the way
    is a symbolic link: for what a sweep keeps there besides its record (its workers'
    output, its study)."""
    path = sweep_dir(parent_log_dir, sweep_id).joinpath(*parts)
    _check_real_dirs(Path(parent_log_dir), path)
    return path


def _check_real_dirs(parent_log_dir: Path, folder: Path) -> None:
    """Refuse a sweep record reached through a symbolic link (``.sweeps`` or its sweep's
    folder): what mlxpy writes or reads under a log dir stays inside it."""
    try:
        check_inside(parent_log_dir, folder)
    except UnsafePathError as exc:
        raise SweepError(
            f"the sweep record {folder} is reached through a symbolic link ({exc}); mlxpy "
            f"keeps sweep records in real directories of the log dir {parent_log_dir} and "
            "never follows a link there: replace the link by a directory, or remove it"
        ) from None


@dataclass
class SweepPoint:
    """One planned point: its index in the sweep and its job's overrides; ``log_id`` and
    ``job_id`` are set when its run dir is claimed at submission."""

    index: int
    overrides: list[str]
    log_id: int | None = None
    job_id: str | None = None


@dataclass
class SweepManifest:
    sweep_id: str
    argv: list[str]  # the command as the user typed it (sys.argv)
    cwd: str
    project_dir: str
    script: str  # the task's file
    sweeper: dict[str, Any]  # {"name": ..., "settings": {...}}
    scheduler: dict[str, Any] | None = None  # {"name": ..., "settings": {...}}
    points: list[SweepPoint] = field(default_factory=list)
    adaptive: bool = False  # points come from a study, one at a time (the journal lists them)
    created: str = ""

    def write(self, parent_log_dir: Path) -> Path:
        """Write (or replace) the manifest atomically; returns its path."""
        folder = sweep_dir(parent_log_dir, self.sweep_id)
        folder.mkdir(parents=True, exist_ok=True)
        _check_real_dirs(Path(parent_log_dir), folder)  # as created, not swapped for a link
        path = folder / MANIFEST_FILE
        data = orjson.dumps({"format": MANIFEST_FORMAT, **asdict(self)}, option=orjson.OPT_INDENT_2)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data + b"\n"))
        return path

    @classmethod
    def read(cls, parent_log_dir: Path, sweep_id: str) -> SweepManifest:
        path = sweep_dir(parent_log_dir, sweep_id) / MANIFEST_FILE
        try:
            data = orjson.loads(read_bytes(path, MAX_MANIFEST_BYTES, Path(parent_log_dir)))
        except FileNotFoundError:
            raise SweepError(
                f"no sweep {sweep_id} in {parent_log_dir} (no {path}); list the sweeps with: "
                f"mlxpy sweeps {parent_log_dir}"
            ) from None
        except (OSError, ValueError) as exc:
            raise SweepError(f"cannot read the sweep manifest {path}: {exc}") from None
        try:
            return _parse(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise SweepError(
                f"the sweep manifest {path} is malformed ({exc}): it was written by another "
                "mlxpy version or altered"
            ) from None


def new_manifest(
    options: Any,
    submits: bool,
    argv: list[str],
    project_dir: Path,
    script: Path,
    points: list[SweepPoint] | None = None,
    adaptive: bool = False,
) -> SweepManifest:
    """The manifest of a new sweep from its launch's options (``mlxpy.launching.options``:
    its ``sweep`` block, less how this launch ran (``resume``, ``only``), and its
    ``scheduler`` block when it ``submits``); not written yet."""
    from mlxpy.rundir.info import now_iso

    sweep_block = options.block("sweep")
    for key in ("resume", "only"):  # how one launch of it ran, not what the sweep is
        sweep_block.pop(key, None)
    scheduler = None
    if submits:
        block = options.block("scheduler")
        scheduler = {"name": block.pop("name"), "settings": block}
    return SweepManifest(
        sweep_id=new_sweep_id(),
        argv=list(argv),
        cwd=os.getcwd(),
        project_dir=str(project_dir),
        script=str(script),
        sweeper={"name": sweep_block.pop("name"), "settings": sweep_block},
        scheduler=scheduler,
        points=list(points or []),
        adaptive=adaptive,
        created=now_iso(),
    )


def _parse(data: Any) -> SweepManifest:
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"format {found!r}, expected {MANIFEST_FORMAT}")
    if not isinstance(data["sweep_id"], str) or not SWEEP_ID.fullmatch(data["sweep_id"]):
        raise ValueError("sweep_id is not a sweep id")
    for key in ("cwd", "project_dir", "script", "created"):
        if not isinstance(data.get(key, ""), str):
            raise ValueError(f"{key} must be a string")
    if not _strings(data["argv"]):
        raise ValueError("argv must be a list of strings")
    for key in ("sweeper", "scheduler"):
        value = data.get(key)
        if value is None and key == "scheduler":
            continue
        if not (
            isinstance(value, dict)
            and isinstance(value.get("name"), str)
            and isinstance(value.get("settings", {}), dict)
        ):
            raise ValueError(f"{key} must be a mapping with a name and settings")
    points = []
    for number, raw in enumerate(data.get("points") or []):
        if not isinstance(raw, dict) or raw.get("index") != number:
            raise ValueError(f"point {number} is malformed")
        if not _strings(raw["overrides"]):
            raise ValueError(f"point {number} is malformed")
        log_id, job_id = raw.get("log_id"), raw.get("job_id")
        if log_id is not None and (type(log_id) is not int or log_id < 0):
            raise ValueError(f"point {number}: log_id must be a run id")
        if job_id is not None and not isinstance(job_id, str):
            raise ValueError(f"point {number}: job_id must be a string")
        points.append(SweepPoint(number, list(raw["overrides"]), log_id, job_id))
    return SweepManifest(
        sweep_id=data["sweep_id"],
        argv=list(data["argv"]),
        cwd=data["cwd"],
        project_dir=data["project_dir"],
        script=data["script"],
        sweeper=dict(data["sweeper"]),
        scheduler=dict(data["scheduler"]) if data.get("scheduler") else None,
        points=points,
        adaptive=bool(data.get("adaptive", False)),
        created=data.get("created", ""),
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True)
class JournalEntry:
    """A run a point started: ``point`` is its index, ``log_id`` its run dir's name."""

    point: int
    log_id: int
    uid: str = ""


def append_journal(parent_log_dir: Path, sweep_id: str, entry: JournalEntry) -> None:
    """Record that a point's run dir was claimed: one short line, one ``O_APPEND`` write."""
    folder = sweep_dir(parent_log_dir, sweep_id)
    folder.mkdir(parents=True, exist_ok=True)
    _check_real_dirs(Path(parent_log_dir), folder)
    line = orjson.dumps(asdict(entry)) + b"\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(folder / JOURNAL_FILE, flags, 0o666)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_journal(parent_log_dir: Path, sweep_id: str) -> dict[int, JournalEntry]:
    """The latest run of each point that started one (malformed lines are skipped)."""
    path = sweep_dir(parent_log_dir, sweep_id) / JOURNAL_FILE
    try:
        data = read_bytes(path, MAX_JOURNAL_BYTES, Path(parent_log_dir))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SweepError(f"cannot read the sweep journal {path}: {exc}") from None
    latest: dict[int, JournalEntry] = {}
    _parse_journal(data, latest)
    return latest


def _parse_journal(data: bytes, latest: dict[int, JournalEntry]) -> None:
    for line in data.splitlines():
        try:
            raw = orjson.loads(line)
            point, log_id, uid = raw["point"], raw["log_id"], raw.get("uid", "")
        except (ValueError, TypeError, KeyError):
            continue  # a torn or foreign line: the others still count
        if type(point) is int and type(log_id) is int and point >= 0 and log_id >= 0:
            latest[point] = JournalEntry(point, log_id, uid if isinstance(uid, str) else "")


class JournalTail:
    """A sweep's journal, read as it grows: each :meth:`read` parses only the lines appended
    since the one before, so a process that looks again before each point it starts spends
    O(1) per point, not a whole read."""

    def __init__(self, parent_log_dir: Path, sweep_id: str) -> None:
        self.parent = Path(parent_log_dir)
        self.path = sweep_dir(self.parent, sweep_id) / JOURNAL_FILE
        self.offset = 0
        self.rest = b""  # a line not ended yet
        self.latest: dict[int, JournalEntry] = {}

    def read(self) -> dict[int, JournalEntry]:
        """The latest run of each point, as the journal says now."""
        try:
            fd = open_regular(self.path, MAX_JOURNAL_BYTES, self.parent)
        except FileNotFoundError:
            return self.latest
        except OSError as exc:
            raise SweepError(f"cannot read the sweep journal {self.path}: {exc}") from None
        try:
            size = os.fstat(fd).st_size
            if size < self.offset:  # replaced by a shorter one: read it again
                self.offset, self.rest, self.latest = 0, b"", {}
            data = os.pread(fd, size - self.offset, self.offset) if size > self.offset else b""
        finally:
            os.close(fd)
        self.offset += len(data)
        ended, newline, rest = (self.rest + data).rpartition(b"\n")
        self.rest = rest
        _parse_journal(ended + newline, self.latest)
        return self.latest


def list_sweeps(parent_log_dir: Path) -> list[str]:
    """The ids of the sweeps recorded under a parent log dir, oldest first."""
    folder = Path(parent_log_dir) / SWEEPS_DIR
    _check_real_dirs(Path(parent_log_dir), folder)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if SWEEP_ID.fullmatch(name))
