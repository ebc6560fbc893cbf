"""Every name inside a run directory, and the format version written into each run.

This module is the only place that spells them; ``docs/run-directory.md`` specifies what each
file holds. Other tools read runs through these names (or that document), never by guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: bumped when a change would mislead an older reader; written as ``info.format``
FORMAT_VERSION = 1
#: runs without ``info.format`` were written before the format had a number; same layout
LEGACY_FORMAT = 0

METADATA_DIR = "metadata"
METRICS_DIR = "metrics"
ARTIFACTS_DIR = "artifacts"
CHECKPOINTS_DIR = "checkpoints"
#: ``metrics/.keys/<log>.json``: the sorted key set of each metric log, for readers
KEYS_DIR = ".keys"
#: ``metrics/.summary/<log>.json``: each metric log's summary, kept by its writer
SUMMARY_DIR = ".summary"
#: ``metrics/.columns/<log>.bin``: a finished log's records as typed columns, kept by its writer
COLUMNS_DIR = ".columns"
#: beside the runs: one line per run id whose finished run started again (a resume)
CHANGES_FILE = ".mlxpy-changes"

INFO_FILE = "info.yaml"
CONFIG_FILE = "config.yaml"
OPTIONS_FILE = "mlxpy.yaml"
RUN_JSON = "run.json"
ERROR_LOG = "error.log"
HEARTBEAT_FILE = "heartbeat"
LOCK_FILE = ".lock"
#: space a live run keeps allocated, given back to write its final status on a full disk
RESERVE_FILE = ".reserve"
PATCH_FILE = "uncommitted.patch"
REQUIREMENTS_FILE = "requirements.txt"
#: ``{artifact name: type name}`` of the artifacts a run logged: names only, never code
ARTIFACTS_MANIFEST = "artifacts.json"
#: ``metadata/tags.json``: the run's tags (a sorted JSON list of strings), changed under
#: ``metadata/.tags.lock`` by ``mlxpy tag`` and ``ctx.logger.add_tags``; ``metadata/notes.md``:
#: free-text notes appended by ``mlxpy note``
TAGS_FILE = "tags.json"
TAGS_LOCK = ".tags.lock"
NOTES_FILE = "notes.md"
#: a submitted run's launch record: what its job needs to start it (``mlxpy.launching.record``)
LAUNCH_RECORD = "launch.json"

METRICS_SUFFIX = ".json"
CHECKPOINT_SUFFIX = ".pkl"

#: the job script a scheduler runs, and the job's own output (written by the scheduler)
JOB_SCRIPT = "script.sh"
JOB_STDOUT = "job.stdout"
JOB_STDERR = "job.stderr"
#: the task's own output, with ``log_streams_to_file``
STREAM_STDOUT = "log.stdout"
STREAM_STDERR = "log.stderr"

#: beside the runs: ``.archive/<id>-<uid>/``, runs moved aside by ``mlxpy archive`` (hidden
#: from the Reader, as every name starting with a dot; ``mlxpy restore`` moves them back)
ARCHIVE_DIR = ".archive"
#: beside the runs, in the parent log dir: the Reader's index, in a dir of its own so that
#: SQLite's ``-wal``/``-shm`` files, made and removed at each open, leave the parent's mtime
#: alone (the index lists the parent again only when that mtime moves)
INDEX_DIR = ".mlxpy-index"
INDEX_FILE = f"{INDEX_DIR}/index.sqlite"

#: a run of several processes (a distributed job): ``ranks/<k>/`` holds what rank k writes
#: apart from the run's own files (its heartbeat, lock, status, error, per-rank metrics)
RANKS_DIR = "ranks"
RANK_STATUS = "status.json"
#: ``metadata/.status.lock``: ranks ending at once merge their statuses into info under it
STATUS_LOCK = ".status.lock"
#: beside the runs: ``.joins/<hash of the job's key>.json``, where rank 0 tells the other
#: ranks of its job which run dir it started (``mlxpy.distributed.join``)
JOINS_DIR = ".joins"
#: beside the runs: the next run id to try, a hint that keeps claiming a new id O(1)
NEXT_ID_FILE = ".next_id"


def rank_stream(name: str, rank: int) -> str:
    """``log.rank<k>.stdout`` for ``log.stdout``: each process of a distributed run has its own."""
    stem, _, suffix = name.rpartition(".")
    return f"{stem}.rank{rank}.{suffix}"


#: run ids are canonical ASCII decimal directory names (``str.isdigit`` would accept ``²``;
#: ``007`` would read as the same id as ``7``)
_RUN_ID = re.compile(r"0|[1-9][0-9]{0,17}")
#: temp files are ``.<stem>.<12 hex>.tmp<suffix>``; nothing else is ever taken for one
_TEMP = re.compile(r"\.(?P<stem>.*)\.[0-9a-f]{12}\.tmp(?P<suffix>\.[^.]*)?")


def is_run_id(name: str) -> bool:
    """Whether a directory name is a run id (``1``, ``42``; not ``²``, ``1-backup``, ``07``)."""
    return _RUN_ID.fullmatch(name) is not None


def temp_name(final: str, token: str) -> str:
    """The hidden temp name a writer uses before renaming onto ``final``; it keeps the final
    suffix, for libraries that look at it. ``token`` is 12 hex digits."""
    stem, dot, suffix = final.rpartition(".")
    if not dot or not stem:
        stem, suffix = final, ""
    else:
        suffix = "." + suffix
    return f".{stem}.{token}.tmp{suffix}"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of our temp files (an artifact named ``.best.tmp`` is not)."""
    return _TEMP.fullmatch(name) is not None


def before_restart_config(restart: int) -> str:
    """The config a run had before it resumed with a different one."""
    return f"config.before_restart_{restart}.yaml"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # a str is taken too

    @property
    def metadata(self) -> Path:
        return self.root / METADATA_DIR

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_DIR

    @property
    def artifacts(self) -> Path:
        return self.root / ARTIFACTS_DIR

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def info(self) -> Path:
        return self.metadata / INFO_FILE

    @property
    def run_json(self) -> Path:
        return self.metadata / RUN_JSON

    @property
    def config(self) -> Path:
        return self.metadata / CONFIG_FILE

    @property
    def options(self) -> Path:
        return self.metadata / OPTIONS_FILE

    @property
    def error_log(self) -> Path:
        return self.metadata / ERROR_LOG

    @property
    def artifacts_manifest(self) -> Path:
        return self.metadata / ARTIFACTS_MANIFEST

    @property
    def heartbeat(self) -> Path:
        return self.metadata / HEARTBEAT_FILE

    @property
    def lock(self) -> Path:
        return self.metadata / LOCK_FILE

    @property
    def reserve(self) -> Path:
        return self.metadata / RESERVE_FILE

    @property
    def tags(self) -> Path:
        return self.metadata / TAGS_FILE

    @property
    def tags_lock(self) -> Path:
        return self.metadata / TAGS_LOCK

    @property
    def notes(self) -> Path:
        return self.metadata / NOTES_FILE

    @property
    def launch_record(self) -> Path:
        return self.metadata / LAUNCH_RECORD

    @property
    def job_script(self) -> Path:
        return self.root / JOB_SCRIPT

    @property
    def job_stdout(self) -> Path:
        return self.root / JOB_STDOUT

    @property
    def job_stderr(self) -> Path:
        return self.root / JOB_STDERR

    @property
    def status_lock(self) -> Path:
        return self.metadata / STATUS_LOCK

    @property
    def ranks(self) -> Path:
        return self.root / RANKS_DIR

    def rank(self, rank: int) -> RankDir:
        """What rank ``rank`` of a distributed run writes beside the run's own files."""
        return RankDir(self.root / RANKS_DIR / str(rank))

    def metrics_file(self, log_name: str) -> Path:
        return self.metrics / f"{log_name}{METRICS_SUFFIX}"

    def keys_file(self, log_name: str) -> Path:
        return self.metrics / KEYS_DIR / f"{log_name}{METRICS_SUFFIX}"

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / f"{name}{CHECKPOINT_SUFFIX}"


@dataclass(frozen=True)
class RankDir:
    """The paths of ``ranks/<k>/`` in a run dir. Rank 0 uses the run's own heartbeat, lock
    and metrics; it keeps only its status and error here. Per-rank metric logs have the same
    format as the run's (``metrics/<log>.json`` with ``metrics/.keys/``)."""

    root: Path

    @property
    def rank(self) -> int:
        return int(self.root.name)

    @property
    def heartbeat(self) -> Path:
        return self.root / HEARTBEAT_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def status(self) -> Path:
        return self.root / RANK_STATUS

    @property
    def error_log(self) -> Path:
        return self.root / ERROR_LOG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_DIR

    def metrics_file(self, log_name: str) -> Path:
        return self.metrics / f"{log_name}{METRICS_SUFFIX}"

    def keys_file(self, log_name: str) -> Path:
        return self.metrics / KEYS_DIR / f"{log_name}{METRICS_SUFFIX}"
