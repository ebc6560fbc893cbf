"""Loggers store each run in its own directory; :class:`DefaultLogger` is the builtin one."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
import types
import warnings
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlxpy.distributed import join
from mlxpy.distributed.detect import SINGLE, DistInfo
from mlxpy.distributed.outcome import (
    RankStatus,
    mark_joined,
    record_rank_end,
    wait_for_ranks,
    write_info_locked,
)
from mlxpy.errors import DiskFullError, LogDirError, MlxpyWarning, PluginError
from mlxpy.hookspecs import hookimpl
from mlxpy.plugins.component import Component
from mlxpy.rundir import claim, layout
from mlxpy.rundir.artifacts import (
    BUILTIN_ARTIFACT_TYPES,
    ArtifactType,
    artifact_path,
    atomic_save,
    find_artifact,
)
from mlxpy.rundir.atomic import atomic_write_text, atomic_write_yaml
from mlxpy.rundir.changes import note_change
from mlxpy.rundir.info import (
    KEPT_ON_RESUME,
    carry_history,
    config_changes,
    iso_time,
    read_info,
    read_yaml,
    write_info,
)
from mlxpy.rundir.layout import FORMAT_VERSION, RankDir, RunDir
from mlxpy.rundir.location import DEFAULT_PARENT_LOG_DIR, resolve_parent_log_dir
from mlxpy.rundir.manifest import (
    ArtifactRecord,
    artifact_key,
    read_artifact_records,
    write_artifact_records,
)
from mlxpy.rundir.metrics import (
    MetricsWriter,
    block_deferred_signals,
    check_log_name,
    is_disk_full,
)
from mlxpy.rundir.safe import check_inside
from mlxpy.rundir.status import RunStatus

if TYPE_CHECKING:
    from mlxpy.context import Context


#: what a live run keeps allocated in its dir (``metadata/.reserve``): given back when the disk
#: is full, so the run can still record how it ended (info, run.json, error.log)
RESERVE_BYTES = 256 * 1024


#: how long rank 0 of a distributed run, its task over, waits for the other ranks to end
#: before it records the run's end (those still at work then record theirs themselves)
RANKS_END_WAIT_S = 10.0


class ConfigChangedWarning(MlxpyWarning):
    """A resumed run was relaunched with a config different from the one it had."""


class MetricsWriteWarning(MlxpyWarning):
    """Buffered metrics could not be written (a full disk); they are kept and retried."""


# -- the logging hooks, fired by the core for any Logger ---------------------------------------
#
# Logger.__init_subclass__ wraps each class's own log_metrics, log_artifacts and log_checkpoint;
# a wrapper fires its hook only when it is the method the instance's class resolves to, so an
# override that calls super() fires once, and the class itself is left as it is.

_FIRING: set[Callable[..., Any]] = set()  # what fires its own hook: never wrapped (again)


def _fires_its_hook(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a method that fires its logging hook itself, under the same rule as the
    wrappers (only when it is the method ``type(self)`` resolves to): DefaultLogger's hot
    ``log_metrics``, which saves the wrapper's extra call."""
    _FIRING.add(method)
    return method


def _arguments(method: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> list[Any]:
    """The values of ``method``'s parameters after ``self``, in order, defaults applied: a
    subclass's own defaults (``log_name="metrics"``) are what its hook reports."""
    bound = inspect.signature(method).bind(None, *args, **kw)
    bound.apply_defaults()
    return [*list(bound.arguments.values())[1:], None, None, None]  # (*args) signatures


def _path_text(path: Any) -> str:
    return "" if path is None else str(path)


def _fire_metrics(ctx: Context, values: list[Any], result: Any) -> None:
    metrics, log_name, step = values[:3]
    ctx.hook.mlxpy_after_metrics_logged(ctx=ctx, metrics=metrics, log_name=log_name, step=step)


def _fire_artifact(ctx: Context, values: list[Any], result: Any) -> None:
    _, name, artifact_type = values[:3]
    ctx.hook.mlxpy_after_artifact_logged(
        ctx=ctx, name=name, artifact_type=artifact_type, path=_path_text(result)
    )


def _fire_checkpoint(ctx: Context, values: list[Any], result: Any) -> None:
    ctx.hook.mlxpy_after_checkpoint_logged(ctx=ctx, name=values[1], path=_path_text(result))


def _fire_after(
    hook_name: str, fire: Callable[[Context, list[Any], Any], None]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A wrapper of a logging method that fires ``hook_name`` after it (only when some plugin
    implements it: the arguments are bound then, not on every call)."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Logger, *args: Any, **kw: Any) -> Any:
            result = method(self, *args, **kw)
            ctx = self.ctx
            main = getattr(ctx, "is_main", True)  # a rank other than 0: its calls are not the run's
            if ctx is not None and main and getattr(type(self), method.__name__) is wrapper:
                if getattr(ctx.hook, hook_name).get_hookimpls():
                    fire(ctx, _arguments(method, args, kw), result)
            return result

        return wrapper

    return wrap


_FIRED_AFTER = {
    "log_metrics": _fire_after("mlxpy_after_metrics_logged", _fire_metrics),
    "log_artifacts": _fire_after("mlxpy_after_artifact_logged", _fire_artifact),
    "log_checkpoint": _fire_after("mlxpy_after_checkpoint_logged", _fire_checkpoint),
}


class _HookImpls:
    """True while a hook has implementations, asked of pluggy each time."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def __bool__(self) -> bool:
        return bool(self.hook.get_hookimpls())


def _live_impls(hook: Any) -> Any:
    """What tells, cheaply, whether ``hook`` has implementations now: pluggy's own list of
    them, which it changes in place as plugins come and go (``get_hookimpls()`` copies it
    on every call); another hook relay's answer, asked each time."""
    slot = inspect.getattr_static(type(hook), "_hookimpls", None)
    if isinstance(slot, types.MemberDescriptorType):  # a stored list, not computed per call
        impls = getattr(hook, "_hookimpls", None)
        if type(impls) is list:
            return impls
    return _HookImpls(hook)


class Logger(Component):
    """Base of loggers. Subclass it, give it a ``name``, register it with
    ``mlxpy_register_loggers`` and select it in ``mlxpy.yaml`` (``logger.name``).

    These are every method and attribute the core uses. After ``log_metrics``,
    ``log_artifacts`` and ``log_checkpoint`` return, the core fires the matching
    ``mlxpy_after_*_logged`` hook (once per call, whatever the subclass overrides).
    """

    role = "logger"

    log_id: Any = None
    log_dir: Path | None = None
    #: the run's context: set by the core before :meth:`start_run`; the logging hooks fire
    #: with it (none fire while it is None)
    ctx: Context | None = None
    #: where this logger keeps runs on this machine, if it does: the version manager leaves
    #: it out of the frozen copy of the code
    parent_log_dir: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr, fire_after in _FIRED_AFTER.items():
            method = cls.__dict__.get(attr)
            if (
                inspect.isfunction(method)
                and method not in _FIRING
                and not getattr(method, "__isabstractmethod__", False)
            ):
                wrapper = fire_after(method)
                _FIRING.add(wrapper)
                setattr(cls, attr, wrapper)

    @abstractmethod
    def start_run(self, ctx: Context) -> None:
        """Claim storage for the run; set ``log_id`` and ``log_dir``."""

    @abstractmethod
    def save_info(self, info: dict[str, Any]) -> None:
        """Persist the run info; called at start, on status changes and at the end."""

    def join_run(self, ctx: Context) -> None:
        """In a distributed job, on every rank but 0 (``ctx.dist``), in place of
        :meth:`start_run`: join the run rank 0 started, set ``log_id`` and ``log_dir``. The
        core then calls the same methods as on rank 0; the logger decides what a rank other
        than 0 writes. A logger that cannot share a run between processes keeps this
        default, which refuses."""
        raise PluginError(
            f"logger '{self.name}' cannot share one run between the {ctx.dist.world_size} "
            f"processes of a distributed job ({ctx.dist.launcher}): it must implement "
            "join_run() (or select DefaultLogger or a subclass of it, logger.name)"
        )

    def finish_metrics(self) -> BaseException | None:
        """Write the metrics still buffered, before the final status is recorded; return the
        error that kept them from disk (it fails a run that completed), or None."""
        return None

    def end_run(self, ctx: Context, status: str) -> None:
        """The task ended with ``status``; the info is saved by the caller just before."""

    def save_metadata_text(self, name: str, text: str) -> None:
        """Keep a small text file with the run's metadata (a patch, requirements)."""

    def save_error(self, text: str) -> None:
        """Keep the traceback of a run that failed (by default as the metadata text
        ``error.log``)."""
        self.save_metadata_text(layout.ERROR_LOG, text)

    def prepare_submission(self, ctx: Context) -> None:
        """Claim the run's storage for a job a scheduler starts later (status SUBMITTED), so
        ids are fixed at submission; set ``log_id`` and ``log_dir`` and save the info. A
        logger that cannot claim in advance keeps this default, which refuses."""
        raise PluginError(
            f"logger '{self.name}' cannot claim run dirs in advance, which submitting jobs to "
            "a scheduler needs: select DefaultLogger or a subclass of it (logger.name), or "
            "use_scheduler: false"
        )

    def adopt_claim(self, log_dir: str | os.PathLike[str]) -> None:
        """In the job a scheduler started: start the run dir that :meth:`prepare_submission`
        claimed (its launch record names it) instead of claiming one. A logger that claims
        in advance implements both; this default refuses, as that one does."""
        raise PluginError(
            f"logger '{self.name}' cannot start a run dir claimed at submission: it must "
            "implement adopt_claim() with prepare_submission() (select DefaultLogger or a "
            "subclass of it, logger.name)"
        )

    @abstractmethod
    def log_metrics(self, metrics: dict[str, Any], log_name: str = "train", step: Any = None):
        """Append one record of scalar metrics to the log ``log_name``."""

    def log_artifacts(self, artifact: Any, artifact_name: str, artifact_type: str) -> Any:
        """Store ``artifact`` under ``artifact_name`` as ``artifact_type``; return where (a
        path). A logger that stores no artifacts keeps this default, which refuses."""
        raise NotImplementedError(f"logger '{self.name}' does not store artifacts")

    def log_checkpoint(self, checkpoint: Any, log_name: str = "last_ckpt") -> Any:
        """Store ``checkpoint`` under ``log_name``; return where (a path). A logger that
        stores no checkpoints keeps this default, which refuses."""
        raise NotImplementedError(f"logger '{self.name}' does not store checkpoints")


class DefaultLogger(Logger):
    """Stores everything as files under ``parent_log_dir/<log id>/``.

    Ids are claimed with an exclusive ``mkdir``; metrics are buffered append-only JSON lines;
    artifacts and checkpoints are written atomically; a heartbeat file's mtime shows the run
    is alive. ``forced_log_id >= 0`` resumes that run, which must exist. A relative
    ``parent_log_dir`` is relative to the project dir (:mod:`mlxpy.rundir.location`). A
    scheduled job starts the run dir claimed for it at submission (:meth:`adopt_claim`).
    """

    parent_log_dir: str

    name = "DefaultLogger"

    def __init__(
        self,
        parent_log_dir: str = DEFAULT_PARENT_LOG_DIR,
        forced_log_id: int = -1,
        log_streams_to_file: bool = False,
        flush_every: int = 1000,
        flush_interval_s: float = 1.0,
        heartbeat_interval_s: float = 10.0,
        join_timeout_s: float = 600.0,
        all_ranks: bool = False,
    ) -> None:
        self.parent_log_dir = parent_log_dir
        #: how long a rank other than 0 waits for rank 0 to start the run
        self.join_timeout_s = join_timeout_s
        #: every rank keeps its own metric logs (as ``log_metrics(..., all_ranks=True)``)
        self.all_ranks = all_ranks
        self.forced_log_id = forced_log_id
        self._claimed: Path | None = None  # the run dir a submission claimed for this job
        self.log_streams_to_file = log_streams_to_file
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.ctx: Context | None = None
        self._writers: dict[str, MetricsWriter] = {}
        self._writers_lock = threading.Lock()  # taken only to open a log's writer
        self._artifact_types = {kind.name: kind for kind in BUILTIN_ARTIFACT_TYPES}
        self._artifact_manifest: dict[str, ArtifactRecord] = {}  # by name, for readers
        self._artifact_providers: dict[str, ArtifactRecord] = {}  # plugin types, by type
        self._lock: claim.RunLock | None = None
        self.run: RunDir | None = None
        self._streams: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._metrics_hook: Any = None  # set by start_run: what log_metrics fires, if anything
        self._metrics_impls: Any = ()  # true while some plugin implements that hook
        self._config: dict[str, Any] = {}
        self._reserved = False
        self._abandon_unwritten = False
        self._write_failure: BaseException | None = None  # while background flushes fail
        # a distributed job: this process's rank, and where its own files go
        self._dist: DistInfo = SINGLE
        self._follower = False  # a rank other than 0: the run's files are rank 0's
        self._rank_dir: RankDir | None = None
        self._session = ""
        self._heartbeat: Path | None = None
        self._metrics_dir: RunDir | RankDir | None = None
        self._final_info: dict[str, Any] = {}

    # -- run directory ------------------------------------------------------------------
    def _parent(self, ctx: Context) -> Path:
        if self._claimed is not None:
            return self._claimed.parent
        return resolve_parent_log_dir(self.parent_log_dir, ctx.info.project_dir)

    def adopt_claim(self, log_dir: str | os.PathLike[str]) -> None:
        """Start the run dir that a submission claimed for this job (its launch record names
        it), or restart it when the scheduler requeued the job, instead of claiming one."""
        self._claimed = Path(log_dir)

    def start_run(self, ctx: Context) -> None:
        self.ctx = ctx
        self._dist = ctx.dist
        parent = self._parent(ctx)
        fresh = self.forced_log_id < 0 and self._claimed is None
        try:
            parent.mkdir(parents=True, exist_ok=True)
            parent = parent.resolve()
            if fresh and self._dist.distributed:  # a restart of the job: its run again
                earlier = self._earlier_attempt(parent)
                if earlier is not None:
                    self.forced_log_id, fresh = earlier, False
            if fresh:
                self.log_id, self.log_dir = claim.claim_new(parent)
            else:
                self.log_id, self.log_dir = self._existing_run(parent)
            self.run = run = RunDir(self.log_dir)
            for path in self._written_paths(run):
                check_inside(run.root, path)
            for sub in (run.metadata, run.metrics):
                sub.mkdir(exist_ok=True)
        except OSError as exc:
            raise self._setup_error(parent, exc) from exc
        self._lock = claim.RunLock(run.lock)
        try:
            self._lock.acquire(self.log_id)
            if not fresh:  # again under the lock, which every starting process takes first
                self._check_resumable(parent, read_info(run.root))
                note_change(parent, self.log_id)  # readers re-check the finished run
            self._take_reserve()
            ctx.info.log_id = self.log_id
            ctx.info.log_dir = str(self.log_dir)
            ctx.info.format = FORMAT_VERSION
            ctx.info.uid = claim.new_uid()
            ctx.info.heartbeat_interval_s = self.heartbeat_interval_s
            self._resume_if_any(ctx)
            self._artifact_manifest = read_artifact_records(run)
            self._config = ctx.config_dict()
            atomic_write_yaml(run.config, self._config)
            atomic_write_yaml(run.options, ctx.mlxpy_dict())
            self._heartbeat, self._metrics_dir = run.heartbeat, run
            self._beat()
            if self._dist.distributed:
                self._start_rank_zero(parent)
        except BaseException as exc:
            self._release_reserve()
            self._lock.release()
            if fresh:  # a dir claimed for nothing: no run is left half-made
                import shutil  # not at import: it loads the compression modules

                shutil.rmtree(run.root, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, LogDirError):
                raise self._setup_error(parent, exc) from exc
            raise
        self._add_plugin_artifact_types(ctx)
        # log_metrics fires the hook itself unless a subclass's override (wrapped) does
        own = type(self).log_metrics is DefaultLogger.log_metrics
        self._metrics_hook = ctx.hook.mlxpy_after_metrics_logged if own else None
        self._metrics_impls = _live_impls(self._metrics_hook) if own else ()
        self._start_background()

    def _start_background(self) -> None:
        """Output capture and the ticker (flushes, heartbeat): last, once the run is started.
        Every process of a distributed job has its own output files."""
        assert self.log_dir is not None
        if self.log_streams_to_file or self._dist.distributed:
            from mlxpy.rundir.streams import StreamCapture

            self._streams = StreamCapture(self.log_dir, self._stream_names())
            self._streams.start()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="mlxpy-logger", daemon=True)
        self._ticker.start()

    def _stream_names(self) -> tuple[str, str]:
        names = (layout.STREAM_STDOUT, layout.STREAM_STDERR)
        if not self._dist.distributed:
            return names
        return (
            layout.rank_stream(names[0], self._dist.rank),
            layout.rank_stream(names[1], self._dist.rank),
        )

    # -- distributed jobs ---------------------------------------------------------------
    def _earlier_attempt(self, parent: Path) -> int | None:
        """The run an earlier attempt of this job (same key: a torchrun restart, a requeue)
        started, if it is over: this attempt resumes it instead of starting another."""
        key = self._dist.key
        if not self._dist.unique_key:  # another job may have used the key: never its run
            return None
        record = join.read(parent, key) if key else None
        if record is None or record.attempt == self._dist.attempt:
            return None
        root = join.run_dir(parent, record)
        if not root.is_dir() or claim.is_locked(RunDir(root).lock):
            return None
        return record.log_id

    def _start_rank_zero(self, parent: Path) -> None:
        """Rank 0, its run started: say so in ``ranks/0/``, then tell the other ranks."""
        assert self.run is not None and self.ctx is not None
        self._session = join.new_session()
        self._rank_dir = self._make_rank_dir(self.run, 0)
        mark_joined(self._rank_dir, self._rank_status(RunStatus.RUNNING.value))
        join.publish(parent, self._dist, int(self.log_id), self.ctx.info.uid, self._session)

    def _make_rank_dir(self, run: RunDir, rank: int) -> RankDir:
        rank_dir = run.rank(rank)
        for path in (run.ranks, rank_dir.root, rank_dir.status, rank_dir.lock, rank_dir.heartbeat):
            check_inside(run.root, path)
        run.ranks.mkdir(exist_ok=True)
        rank_dir.root.mkdir(exist_ok=True)
        check_inside(run.root, rank_dir.root)  # again: not swapped for a link meanwhile
        return rank_dir

    def _rank_status(self, status: str, info: dict[str, Any] | None = None) -> RankStatus:
        info = info or {}
        error = info.get("error")
        return RankStatus(
            rank=self._dist.rank,
            session=self._session,
            status=status,
            host=os.uname().nodename,
            pid=os.getpid(),
            end_time=info.get("end_time"),
            error=dict(error) if isinstance(error, dict) else None,
            interrupt_reason=info.get("interrupt_reason"),
        )

    def join_run(self, ctx: Context) -> None:
        """A rank other than 0: wait for rank 0 to publish the run it started (keyed on the
        launcher's identity of the job), then keep this rank's own files in ``ranks/<k>/``.
        The run's config, info and options are rank 0's alone."""
        self.ctx = ctx
        self._dist = dist = ctx.dist
        self._follower = True
        parent = self._parent(ctx)
        try:
            parent.mkdir(parents=True, exist_ok=True)
            parent = parent.resolve()
        except OSError as exc:
            raise self._setup_error(parent, exc) from exc
        record = join.wait(parent, dist, self.join_timeout_s)
        if self._claimed is not None and record.log_id != int(self._claimed.name):
            raise LogDirError(
                f"rank {dist.rank}: rank 0 of this job started run {record.log_id} in "
                f"{parent}, but this job's launch record names run {self._claimed.name}: "
                "the ranks were not started by the same submission"
            )
        self.log_id = record.log_id
        self.log_dir = root = join.run_dir(parent, record)
        try:
            check_inside(parent, root)
            self.run = run = RunDir(root)
            self._rank_dir = rank_dir = self._make_rank_dir(run, dist.rank)
        except OSError as exc:
            raise self._setup_error(parent, exc) from exc
        self._lock = claim.RunLock(rank_dir.lock)
        self._lock.acquire(f"{record.log_id} (rank {dist.rank})")
        try:
            self._session = record.session
            ctx.info.log_id = self.log_id
            ctx.info.log_dir = str(root)
            ctx.info.format = FORMAT_VERSION
            ctx.info.uid = record.uid
            self._heartbeat, self._metrics_dir = rank_dir.heartbeat, rank_dir
            self._artifact_manifest = read_artifact_records(run)
            mark_joined(rank_dir, self._rank_status(RunStatus.RUNNING.value))
            self._beat()
        except BaseException:
            self._lock.release()
            raise
        self._start_background()

    @staticmethod
    def _setup_error(parent: Path, exc: OSError) -> LogDirError:
        if is_disk_full(exc):
            error = DiskFullError(
                f"cannot start a run in {parent}: the disk holding it is full "
                f"({exc.strerror}). Free space there (df -h {parent}) or set "
                "logger.parent_log_dir to a disk with room"
            )
            error.errno = exc.errno
            return error
        return LogDirError(
            f"cannot create a run directory in {parent} (logger.parent_log_dir): {exc}"
        )

    def _existing_run(self, parent: Path) -> tuple[int, Path]:
        """The run dir a forced (resumed) or claimed (scheduled) id names. Nothing is
        created in it unless it has run info, which a fresh launch writes only once it holds
        the dir's lock: a forced id can never slip into a dir that a launch is claiming."""
        log_id = int(self._claimed.name) if self._claimed is not None else self.forced_log_id
        root = parent / str(log_id)
        if not os.path.lexists(root):
            if self._claimed is not None:
                raise LogDirError(
                    f"run {log_id} does not exist in {parent}: the run dir this job's launch "
                    "record names is gone (removed after the submission?); submit the job again"
                )
            raise LogDirError(
                f"run {log_id} does not exist in {parent}; logger.forced_log_id resumes an "
                f"existing run: check the id (the runs are the numbered dirs of {parent}), or "
                "leave the option out to start a new run"
            )
        check_inside(parent, root)
        if not root.is_dir():
            raise LogDirError(f"{root} is not a run directory")
        for path in self._written_paths(RunDir(root)):  # before reading: a link is no run
            check_inside(root, path)
        self.log_id = log_id
        self._check_resumable(parent, read_info(root))
        return log_id, root

    def _check_resumable(self, parent: Path, info: dict[str, Any] | None) -> None:
        log_id = self.log_id
        if info is None:
            raise LogDirError(
                f"{parent / str(log_id)} has no run info ({layout.METADATA_DIR}/"
                f"{layout.INFO_FILE}): it is not a run, or one still being created; only a "
                "run that started can be resumed"
            )
        status = info.get("status")
        if self._claimed is not None:
            if status != RunStatus.SUBMITTED and "submit_time" not in info:
                raise LogDirError(
                    f"run {log_id} in {parent} was not claimed by a submission (status "
                    f"{status}), yet this job's launch record names it; only a submitted job "
                    "starts a claimed run. Resume a run with +mlxpy.logger.forced_log_id=N"
                )
        elif status == RunStatus.SUBMITTED:
            raise LogDirError(
                f"run {log_id} in {parent} is SUBMITTED: its scheduled job will start it. To "
                f"run it here instead, cancel the job (mlxpy cancel {log_id}) and resume it "
                "once mlxpy status shows it CANCELLED"
            )

    def _take_reserve(self) -> None:
        """Allocate ``RESERVE_BYTES`` in the run dir; a disk without that room fails here,
        before the task starts, not half-way."""
        assert self.run is not None
        path = self.run.reserve
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o666)
        try:
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            except OSError as exc:
                if is_disk_full(exc):
                    raise
                view = memoryview(bytes(RESERVE_BYTES))  # no fallocate here: write it
                while view:
                    view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        self._reserved = True

    def _release_reserve(self) -> bool:
        """Give the reserved room back; True if there was some."""
        if not self._reserved or self.run is None:
            return False
        self._reserved = False
        try:
            os.unlink(self.run.reserve)
        except FileNotFoundError:
            pass
        return True

    def _disk_full(self, exc: OSError, what: str, then: str | None = None) -> DiskFullError:
        """The one message for a full disk: what was not written, where, how to go on."""
        parent = self.log_dir.parent if self.log_dir is not None else self.parent_log_dir
        if then is None:
            then = (
                " or move logger.parent_log_dir to another disk, then resume the run with "
                f"+mlxpy.logger.forced_log_id={self.log_id}"
            )
        error = DiskFullError(
            f"cannot write {what}: the disk holding {parent} is full ({exc.strerror}). Free "
            f"space on it (df -h {parent}){then}"
        )
        error.errno = exc.errno
        return error

    def _write_with_reserve(self, write: Any, what: str) -> None:
        """``write()``; on a full disk, give back the reserve and try once more."""
        try:
            write()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            if not self._release_reserve():
                raise self._disk_full(exc, what) from exc
            try:
                write()
            except OSError as again:
                if not is_disk_full(again):
                    raise
                raise self._disk_full(again, what) from again

    def _written_paths(self, run: RunDir) -> list[Path]:
        """What the run writes at fixed names: none may be a symbolic link (a planted one
        would lead writes outside the run dir). Artifact and metric paths are checked when
        written."""
        paths = [run.metadata, run.metrics, run.artifacts, run.checkpoints]
        paths += [run.lock, run.heartbeat, run.info, run.run_json, run.config, run.options]
        if self.log_streams_to_file or self._dist.distributed:
            paths += [run.root / name for name in self._stream_names()]
        return paths

    def prepare_submission(self, ctx: Context) -> None:
        """Claim a run dir for a job that a scheduler will start later, and write its
        metadata (status SUBMITTED), so ids are fixed at submission time. With
        ``forced_log_id``, that existing run is claimed again instead: the job resumes it."""
        self.ctx = ctx
        parent = self._parent(ctx)
        if self.forced_log_id >= 0:
            self._reclaim_for_submission(ctx, parent)
            return
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.log_id, self.log_dir = claim.claim_new(parent.resolve())
            self.run = run = RunDir(self.log_dir)
            run.metadata.mkdir()
        except OSError as exc:
            raise LogDirError(f"cannot create a run directory in {parent}: {exc}") from exc
        ctx.info.log_id = self.log_id
        ctx.info.log_dir = str(self.log_dir)
        ctx.info.format = FORMAT_VERSION
        ctx.info.uid = claim.new_uid()
        self._config = ctx.config_dict()
        atomic_write_yaml(run.config, self._config)
        atomic_write_yaml(run.options, ctx.mlxpy_dict())
        self.save_info(dict(ctx.info))

    def _reclaim_for_submission(self, ctx: Context, parent: Path) -> None:
        """Claim the ended run ``forced_log_id`` for a new job (a resubmitted sweep point):
        SUBMITTED again, its earlier attempts in ``history``; the job resumes it."""
        try:
            self.log_id, self.log_dir = self._existing_run(parent.resolve())
        except OSError as exc:
            raise LogDirError(f"cannot claim run {self.forced_log_id} in {parent}: {exc}") from exc
        self.run = run = RunDir(self.log_dir)
        lock = claim.RunLock(run.lock)
        lock.acquire(self.log_id)  # a live run is refused
        try:
            previous = read_info(run.root)
            self._check_resumable(self.log_dir.parent, previous)  # again, under the lock
            assert previous is not None
            for key in KEPT_ON_RESUME:
                if key in previous and key not in ("scheduler", "submit_time"):
                    ctx.info[key] = previous[key]  # a new submission: its own scheduler, time
            if previous.get("status") == RunStatus.RUNNING:  # killed before recording its end
                previous = {**previous, **self._lost_attempt(run.heartbeat)}
            carry_history(previous, ctx.info)
            note_change(self.log_dir.parent, self.log_id)  # an ended run is SUBMITTED again
            ctx.info.log_id = self.log_id
            ctx.info.log_dir = str(self.log_dir)
            ctx.info.format = FORMAT_VERSION
            ctx.info.setdefault("uid", claim.new_uid())
            self._keep_changed_config(ctx)
            self._config = ctx.config_dict()
            atomic_write_yaml(run.config, self._config)
            atomic_write_yaml(run.options, ctx.mlxpy_dict())
            self.save_info(dict(ctx.info))
        finally:
            lock.release()

    def _resume_if_any(self, ctx: Context) -> None:
        assert self.run is not None
        run = self.run
        previous = read_yaml(run.info, run.root)
        if not isinstance(previous, dict):
            return
        claim.remove_stale_temps(run.root)
        for key in KEPT_ON_RESUME:  # set when claimed or submitted, kept
            if key in previous:
                ctx.info[key] = previous[key]
        if previous.get("status") == RunStatus.SUBMITTED:  # its first start, not a restart
            for key in ("restarts", "history"):  # unless it was submitted again to resume
                if key in previous:
                    ctx.info[key] = previous[key]
            return
        if previous.get("status") == RunStatus.RUNNING:  # killed before recording its end
            previous = {**previous, **self._lost_attempt(run.heartbeat)}
        carry_history(previous, ctx.info)
        self._keep_changed_config(ctx)

    def _keep_changed_config(self, ctx: Context) -> None:
        """Before a resumed run writes its config: keep the earlier one if it differs."""
        assert self.run is not None
        run = self.run
        old_config = read_yaml(run.config, run.root) or {}
        changes = config_changes(old_config, ctx.config_dict())
        if changes:
            kept = run.metadata / layout.before_restart_config(ctx.info.restarts)
            atomic_write_yaml(kept, old_config)
            warnings.warn(
                f"run {self.log_id} resumes with a different config (the earlier one is kept in "
                f"{kept.name}): " + "; ".join(changes),
                ConfigChangedWarning,
                stacklevel=2,
            )

    @staticmethod
    def _lost_attempt(heartbeat: Path) -> dict[str, Any]:
        """An attempt killed without a word (SIGKILL, preemption, a lost node) is LOST, as
        the reader calls it; it ended about when its heartbeat stopped."""
        try:
            end = iso_time(heartbeat.stat().st_mtime)
            return {"status": RunStatus.LOST.value, "end_time": end}
        except OSError:
            return {"status": RunStatus.LOST.value}

    def save_info(self, info: dict[str, Any]) -> None:
        """Write the run info. A rank other than 0 keeps it for its own status; rank 0's
        final info is merged with the other ranks' outcomes (the worst wins)."""
        assert self.log_dir is not None and self.ctx is not None
        if self._follower:
            self._final_info = dict(info)
            return
        log_dir = self.log_dir
        if self._rank_dir is not None and info.get("status") != RunStatus.RUNNING:
            assert self.run is not None
            run, rank_dir = self.run, self._rank_dir
            status = self._rank_status(str(info.get("status")), info)
            wait_for_ranks(run, self._session, self._dist.world_size, RANKS_END_WAIT_S)
            written: list[dict[str, Any] | None] = [None]
            self._write_with_reserve(
                lambda: written.__setitem__(
                    0, record_rank_end(run, rank_dir, status, info, self._config)
                ),
                f"the run info of run {self.log_id}",
            )
            merged_info = written[0]
            if merged_info is not None and merged_info.get("status") != info.get("status"):
                # the run's outcome is the ranks' worst: what rank 0 reports from here on
                for key in ("status", "error", "failed_rank", "interrupt_reason", "exit_code"):
                    if key in merged_info:
                        self.ctx.info[key] = merged_info[key]
                    else:
                        self.ctx.info.pop(key, None)
            return
        if self._rank_dir is not None:  # never between another rank's read and write of it
            assert self.run is not None
            run = self.run
            self._write_with_reserve(
                lambda: write_info_locked(run, info, self._config),
                f"the run info of run {self.log_id}",
            )
            return
        self._write_with_reserve(
            lambda: write_info(log_dir, info, self._config), f"the run info of run {self.log_id}"
        )

    def save_error(self, text: str) -> None:
        """Keep the traceback; on a full disk it is given up (``info.error`` names it). In a
        distributed job each rank keeps its own (``ranks/<k>/error.log``); the failing rank's
        becomes the run's."""
        try:
            if self._rank_dir is not None:
                path = self._rank_dir.error_log
                self._write_with_reserve(lambda: atomic_write_text(path, text), str(path))
            if not self._follower:
                self.save_metadata_text(layout.ERROR_LOG, text)
        except DiskFullError:
            pass

    def save_metadata_text(self, name: str, text: str) -> None:
        if self._follower:  # the run's metadata is rank 0's
            return
        check_log_name(name, "metadata file name")
        self._require_dir()
        assert self.run is not None
        path = self.run.metadata / name
        self._write_with_reserve(lambda: atomic_write_text(path, text), str(path))

    def _beat(self) -> None:
        assert self.run is not None
        path = self._heartbeat or self.run.heartbeat
        try:
            os.utime(path, follow_symlinks=False)  # a link planted later: its own mtime
        except FileNotFoundError:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            os.close(fd)

    def _tick(self) -> None:
        """Background: flush metrics every ``flush_interval_s``, beat every
        ``heartbeat_interval_s``, so an idle run still persists what it logged."""
        block_deferred_signals()
        since_beat = 0.0
        while not self._stop.wait(self.flush_interval_s):
            try:
                self._flush_in_background()
            except Exception:  # pragma: no cover - a bug here must not stop the flushing
                pass
            since_beat += self.flush_interval_s
            if since_beat >= self.heartbeat_interval_s:
                since_beat = 0.0
                try:
                    self._beat()
                except OSError:
                    pass

    def _flush_in_background(self) -> None:
        """Never raises, so the ticker never dies: records that cannot be written stay
        buffered and are retried on the next tick. Warns once when writes start failing and
        once when every record is on disk again."""
        retry = f"retried every {self.flush_interval_s:g} s"
        try:
            self.flush()
        except Exception as exc:
            if self._write_failure is None:
                self._write_failure = exc
                cause = exc.__cause__
                if isinstance(cause, OSError) and is_disk_full(cause):
                    text = str(self._disk_full(cause, self._unwritten(), f"; they are {retry}"))
                else:
                    text = f"{exc}; the records are kept in memory and {retry}"
                warnings.warn(text, MetricsWriteWarning, stacklevel=1)
        else:
            if self._write_failure is not None:
                self._write_failure = None
                warnings.warn(
                    f"metrics of run {self.log_id} are written again: every record kept in "
                    "memory is on disk",
                    MetricsWriteWarning,
                    stacklevel=1,
                )

    def flush(self) -> None:
        """Write every buffered metric record now. On a full disk raises
        :class:`~mlxpy.errors.DiskFullError`; the records stay buffered for a retry."""
        first: BaseException | None = None
        for writer in list(self._writers.values()):
            try:
                writer.flush()
            except OSError as exc:
                if first is None:
                    first = self._write_error(writer, exc)
                    first.__cause__ = exc
        if first is not None:
            raise first

    def _unwritten(self) -> str:
        waiting = [w for w in list(self._writers.values()) if w.pending]
        paths = ", ".join(str(w.path) for w in waiting)
        return f"{sum(w.pending for w in waiting)} metric record(s) to {paths}"

    def _write_error(self, writer: MetricsWriter, exc: OSError) -> BaseException:
        what = f"{writer.pending} metric record(s) to {writer.path}"
        if is_disk_full(exc):
            return self._disk_full(exc, what)
        return LogDirError(f"cannot write {what}: {exc.strerror or exc}")

    def finish_metrics(self) -> BaseException | None:
        # the ticker stops first: after a failed final flush it must not write the records
        # the run's record is about to call lost (into room the reserve gives back)
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()
        try:
            self.flush()
        except (OSError, LogDirError) as exc:
            self._abandon_unwritten = True  # the record says they are lost: keep it true
            return exc
        for writer in list(self._writers.values()):  # before the final status, not after
            try:
                writer.finish()
            except OSError:  # the summaries are hints: a reader parses the logs
                pass
        return None

    def end_run(self, ctx: Context, status: str) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        for writer in self._writers.values():
            try:
                writer.close(flush=not self._abandon_unwritten)
            except OSError:  # reported by finish_metrics, or the run failed anyway
                pass
        self._abandon_unwritten = False
        self._writers.clear()
        if self._streams is not None:
            self._streams.stop()
            self._streams = None
        self._release_reserve()
        try:
            self._beat()
        except OSError:
            pass
        if not self._follower and self._rank_dir is not None and self.log_dir is not None:
            join.withdraw(self.log_dir.parent, self._dist, self._session)
        if self._follower and self._rank_dir is not None and self.run is not None:
            info = self._final_info or {"status": status}
            try:  # before the lock goes: until then, no other rank takes this one for LOST
                record_rank_end(self.run, self._rank_dir, self._rank_status(status, info))
            except OSError as exc:
                print(
                    f"mlxpy: warning: rank {self._dist.rank} of run {self.log_id} could not "
                    f"record its end: {exc}",
                    file=sys.stderr,
                )
        if self._lock is not None:
            self._lock.release()

    def _require_dir(self) -> Path:
        if self.log_dir is None:
            raise LogDirError("the logger is used before its run started")
        return self.log_dir

    # -- metrics ------------------------------------------------------------------------
    @_fires_its_hook
    def log_metrics(
        self,
        metrics: dict[str, Any],
        log_name: str = "train",
        step: Any = None,
        all_ranks: bool = False,
    ):
        """Append ``metrics`` (scalars) to ``metrics/<log_name>.json``; ``step`` is stored
        as the record's ``step`` key. In a distributed job only rank 0's calls are kept,
        unless ``all_ranks`` (or the logger's ``all_ranks`` option): each other rank then
        keeps its own log in ``ranks/<k>/metrics/``."""
        if self._follower and not (all_ranks or self.all_ranks):
            return
        try:
            writer = self._writers[log_name]
        except KeyError:
            writer = self._open_writer(log_name)
        try:
            writer.write(metrics, step)
        except OSError as exc:  # failing writes kept more than memory should hold
            raise self._write_error(writer, exc) from exc
        # the wrapper's work, inlined (see _fires_its_hook); pluggy's call cost is skipped
        # while no plugin implements the hook
        if self._metrics_impls:
            self._metrics_hook(ctx=self.ctx, metrics=metrics, log_name=log_name, step=step)

    def _open_writer(self, log_name: str) -> MetricsWriter:
        """The writer of a log's first record. Threads logging to a new log at once get the
        one writer: a second one, replaced in ``_writers``, would never flush its record."""
        with self._writers_lock:
            writer = self._writers.get(log_name)
            return writer if writer is not None else self._new_writer(log_name)

    def _new_writer(self, log_name: str) -> MetricsWriter:
        check_log_name(log_name)
        self._require_dir()
        assert self.run is not None
        where = self._metrics_dir or self.run
        path, keys = where.metrics_file(log_name), where.keys_file(log_name)
        check_inside(self.run.root, path)
        check_inside(self.run.root, keys)
        try:
            if where is not self.run:  # a rank's own logs: created when first written
                where.metrics.mkdir(exist_ok=True)
            writer = MetricsWriter(path, keys, log_name, self.flush_every)
        except OSError as exc:
            if is_disk_full(exc):
                raise self._disk_full(exc, str(path)) from exc
            raise
        self._writers[log_name] = writer
        return writer

    # -- artifacts ----------------------------------------------------------------------
    def _add_plugin_artifact_types(self, ctx: Any) -> None:
        """The installed plugins' artifact types, each with the distribution providing it,
        which the manifest records so another machine can say what to install."""
        if not ctx.hook.mlxpy_register_artifact_types.get_hookimpls():
            return  # no plugin provides types (a context built by hand has no plugins)
        from mlxpy.plugins import get_plugins

        for name, (kind, plugin) in get_plugins().artifact_types().items():
            if name in self._artifact_types:
                continue
            self._artifact_types[name] = kind
            if plugin is not None and plugin.distribution:
                self._artifact_providers[name] = ArtifactRecord(
                    name, plugin.name, plugin.distribution, plugin.version
                )

    def register_artifact_type(self, name: str, save: Any, load: Any, extension: str = "") -> None:
        """Teach the logger a new type: ``save(obj, path)``, ``load(path)``."""
        check_log_name(name, "artifact type name")
        self._artifact_types[name] = ArtifactType(name, save, load, extension)
        self._artifact_providers.pop(name, None)  # the task's own type now

    def _artifact_type(self, artifact_type: str) -> ArtifactType:
        try:
            return self._artifact_types[artifact_type]
        except KeyError:
            known = ", ".join(sorted(self._artifact_types))
            raise ValueError(
                f"unknown artifact type {artifact_type!r}; known types: {known}. "
                "Add one with ctx.logger.register_artifact_type(name, save, load, extension)."
            ) from None

    def add_tags(self, *tags: str | list[str]) -> list[str]:
        """Tag the run (``add_tags("baseline", "good")``; the Reader's ``tags`` column, queried
        as ``tags contains "good"``); returns the run's tags now. Tags added meanwhile with
        ``mlxpy tag`` are kept: every change is made under the run's tags lock. In a
        distributed job only rank 0 tags the run (the others return ``[]``)."""
        return self._change_tags(tags, remove=False)

    def remove_tags(self, *tags: str | list[str]) -> list[str]:
        """Remove tags of the run (those it does not have are ignored); returns its tags."""
        return self._change_tags(tags, remove=True)

    def _change_tags(self, tags: tuple[Any, ...], remove: bool) -> list[str]:
        from mlxpy.rundir.tags import update_tags

        flat = [t for item in tags for t in (item if isinstance(item, (list, tuple)) else [item])]
        if self._follower:
            return []
        self._require_dir()
        assert self.run is not None
        if remove:
            return update_tags(self.run.root, remove=flat)
        return update_tags(self.run.root, add=flat)

    def log_artifacts(self, artifact: Any, artifact_name: str, artifact_type: str) -> Path:
        """Save ``artifact`` atomically to ``artifacts/<type>/<name><extension>``, and record
        its type name in ``metadata/artifacts.json`` for readers. A rank other than 0 of a
        distributed job stores nothing (returns None): the run's artifacts are rank 0's."""
        if self._follower:
            return None  # type: ignore[return-value]
        kind = self._artifact_type(artifact_type)
        self._require_dir()
        assert self.run is not None
        base = self.run.artifacts / artifact_type
        path = artifact_path(self.run.root, base, artifact_name, kind.extension)
        self._save(kind, artifact, path)
        key = artifact_key(artifact_name)
        record = self._artifact_providers.get(artifact_type) or ArtifactRecord(artifact_type)
        if self._artifact_manifest.get(key) != record:  # a reader finds it by name
            self._artifact_manifest[key] = record
            write_artifact_records(self.run, self._artifact_manifest)
        return path

    def load_artifacts(self, artifact_name: str, artifact_type: str | None = None) -> Any:
        """Load an artifact; without ``artifact_type`` every type is tried but pickle and
        torch (loading them runs code from the file: ask for them by name)."""
        self._require_dir()
        assert self.run is not None
        if artifact_type:
            kinds = [self._artifact_type(artifact_type)]
        else:  # the type recorded for it first (metadata/artifacts.json), then the others
            entry = self._artifact_manifest.get(artifact_key(artifact_name))
            recorded = self._artifact_types.get(entry.type) if entry else None
            kinds = [recorded] if recorded is not None else []
            kinds += [k for k in self._artifact_types.values() if k is not recorded]
        found = find_artifact(self.run.root, artifact_name, kinds, typed=bool(artifact_type))
        if found is None:
            raise FileNotFoundError(f"no artifact {artifact_name!r} in {self.run.artifacts}")
        return found[0].load(str(found[1]))

    # -- checkpoints --------------------------------------------------------------------
    def log_checkpoint(self, checkpoint: Any, log_name: str = "last_ckpt") -> Path:
        """Pickle ``checkpoint`` atomically to ``checkpoints/<log_name>.pkl`` (after flushing
        metrics, so metrics and checkpoint agree after a crash). A rank other than 0 of a
        distributed job stores nothing (returns None); every rank loads rank 0's."""
        if self._follower:
            return None  # type: ignore[return-value]
        check_log_name(log_name, "checkpoint name")
        self.flush()
        kind = self._artifact_types["pickle"]
        self._require_dir()
        assert self.run is not None
        path = self.run.checkpoint(log_name)
        check_inside(self.run.root, path)
        self._save(kind, checkpoint, path)
        return path

    def _save(self, kind: ArtifactType, obj: Any, path: Path) -> None:
        try:
            atomic_save(kind, obj, path)
        except OSError as exc:
            if is_disk_full(exc):
                raise self._disk_full(exc, str(path)) from exc
            raise

    def load_checkpoint(self, log_name: str = "last_ckpt") -> Any:
        """The last checkpoint saved under ``log_name``, or None when there is none."""
        check_log_name(log_name, "checkpoint name")
        kind = self._artifact_types["pickle"]
        self._require_dir()
        assert self.run is not None
        path = self.run.checkpoint(log_name)
        check_inside(self.run.root, path)
        if not path.is_file():
            return None
        return kind.load(str(path))


# their public name (as numpy's ``set_module``): ``type(ctx.logger)`` prints
# ``mlxpy.logger.DefaultLogger``, the dotted path users write in mlxpy.yaml
Logger.__module__ = DefaultLogger.__module__ = "mlxpy.logger"


@hookimpl
def mlxpy_register_loggers() -> list[type]:
    """The builtin's registration, as a plugin's ``plugin.py`` would write it."""
    return [DefaultLogger]


__all__ = ["ConfigChangedWarning", "DefaultLogger", "Logger", "MetricsWriteWarning", "write_info"]
