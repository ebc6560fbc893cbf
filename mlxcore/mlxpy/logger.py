"""Loggers store each run in its own directory; :class:`DefaultLogger` is the builtin one."""

from __future__ import annotations

import os
import threading
import warnings
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlxpy.artifacts import (
    BUILTIN_ARTIFACT_TYPES,
    ArtifactType,
    artifact_path,
    atomic_save,
    find_artifact,
)
from mlxpy.component import Component
from mlxpy.errors import LogDirError, MlxpyWarning
from mlxpy.run_info import iso_time
from mlxpy.rundir import claim, layout
from mlxpy.rundir.atomic import atomic_write_text, atomic_write_yaml
from mlxpy.rundir.info import KEPT_ON_RESUME, carry_history, config_changes, read_yaml, write_info
from mlxpy.rundir.layout import FORMAT_VERSION, RunDir
from mlxpy.rundir.metrics import MetricsWriter, check_log_name
from mlxpy.rundir.safe import check_inside
from mlxpy.rundir.status import RunStatus

if TYPE_CHECKING:
    from mlxpy.context import Context


class ConfigChangedWarning(MlxpyWarning):
    """A resumed run was relaunched with a config different from the one it had."""


class Logger(Component):
    """Base class of loggers. Subclass it, give it a ``name``, register it with
    ``mlxpy_register_loggers`` and select it in ``mlxpy.yaml`` (``logger.name``)."""

    role = "logger"

    log_id: Any = None
    log_dir: Path | None = None

    @abstractmethod
    def start_run(self, ctx: Context) -> None:
        """Claim storage for the run; set ``log_id`` and ``log_dir``; keep ``ctx``."""

    @abstractmethod
    def save_info(self, info: dict[str, Any]) -> None:
        """Persist the run info; called at start, on status changes and at the end."""

    def end_run(self, ctx: Context, status: str) -> None:
        """The task ended with ``status``; the info is saved by the caller just before."""

    def save_metadata_text(self, name: str, text: str) -> None:
        """Keep a small text file with the run's metadata (a patch, requirements)."""

    @abstractmethod
    def log_metrics(self, metrics: dict[str, Any], log_name: str = "train", step: Any = None):
        """Append one record of scalar metrics to the log ``log_name``."""


class DefaultLogger(Logger):
    """Stores everything as files under ``parent_log_dir/<log id>/``.

    Ids are claimed with an exclusive ``mkdir``; metrics are buffered append-only JSON lines;
    artifacts and checkpoints are written atomically; a heartbeat file's mtime shows the run
    is alive. ``forced_log_id >= 0`` resumes that run.
    """

    name = "DefaultLogger"

    def __init__(
        self,
        parent_log_dir: str = "./logs",
        forced_log_id: int = -1,
        log_streams_to_file: bool = False,
        flush_every: int = 1000,
        flush_interval_s: float = 1.0,
        heartbeat_interval_s: float = 10.0,
    ) -> None:
        self.parent_log_dir = parent_log_dir
        self.forced_log_id = forced_log_id
        self.log_streams_to_file = log_streams_to_file
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.ctx: Context | None = None
        self._writers: dict[str, MetricsWriter] = {}
        self._artifact_types = {kind.name: kind for kind in BUILTIN_ARTIFACT_TYPES}
        self._lock: claim.RunLock | None = None
        self.run: RunDir | None = None
        self._streams: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._metrics_hook: Any = None
        self._config: dict[str, Any] = {}

    # -- run directory ------------------------------------------------------------------
    def start_run(self, ctx: Context) -> None:
        self.ctx = ctx
        parent = Path(os.path.expanduser(self.parent_log_dir))
        if not parent.is_absolute():
            parent = Path(ctx.info.project_dir) / parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            parent = parent.resolve()
            if self.forced_log_id >= 0:
                self.log_id, self.log_dir = self.forced_log_id, parent / str(self.forced_log_id)
                check_inside(parent, self.log_dir)  # a resumed run dir may be a planted link
                self.log_dir.mkdir(exist_ok=True)
            else:
                self.log_id, self.log_dir = claim.claim_new(parent)
            self.run = run = RunDir(self.log_dir)
            for path in self._written_paths(run):
                check_inside(run.root, path)
            for sub in (run.metadata, run.metrics):
                sub.mkdir(exist_ok=True)
        except OSError as exc:
            raise LogDirError(
                f"cannot create a run directory in {parent} (logger.parent_log_dir): {exc}"
            ) from exc
        self._lock = claim.RunLock(run.lock)
        self._lock.acquire(self.log_id)
        ctx.info.log_id = self.log_id
        ctx.info.log_dir = str(self.log_dir)
        ctx.info.format = FORMAT_VERSION
        ctx.info.uid = claim.new_uid()
        ctx.info.heartbeat_interval_s = self.heartbeat_interval_s
        self._resume_if_any(ctx)
        self._config = ctx.config_dict()
        atomic_write_yaml(run.config, self._config)
        atomic_write_yaml(run.options, ctx.mlxpy_dict())
        for kinds in ctx.hook.mlxpy_register_artifact_types():
            for kind in kinds or []:
                self._artifact_types.setdefault(kind.name, kind)
        hook = getattr(ctx.hook, "mlxpy_after_metrics_logged", None)
        self._metrics_hook = hook if hasattr(hook, "get_hookimpls") else None
        self._beat()
        if self.log_streams_to_file:
            from mlxpy.streams import StreamCapture

            self._streams = StreamCapture(self.log_dir)
            self._streams.start()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="mlxpy-logger", daemon=True)
        self._ticker.start()

    def _written_paths(self, run: RunDir) -> list[Path]:
        """What the run writes at fixed names: none may be a symbolic link (a planted one
        would lead writes outside the run dir). Artifact and metric paths are checked when
        written."""
        paths = [run.metadata, run.metrics, run.artifacts, run.checkpoints]
        paths += [run.lock, run.heartbeat, run.info, run.run_json, run.config, run.options]
        if self.log_streams_to_file:
            paths += [run.root / layout.STREAM_STDOUT, run.root / layout.STREAM_STDERR]
        return paths

    def prepare_submission(self, ctx: Context) -> None:
        """Claim a run dir for a job that a scheduler will start later, and write its
        metadata (status SUBMITTED), so ids are fixed at submission time."""
        self.ctx = ctx
        parent = Path(os.path.expanduser(self.parent_log_dir))
        if not parent.is_absolute():
            parent = Path(ctx.info.project_dir) / parent
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
            return
        if previous.get("status") == RunStatus.RUNNING:  # killed before recording its end
            previous = {**previous, **self._lost_attempt(run.heartbeat)}
        carry_history(previous, ctx.info)
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
        assert self.log_dir is not None and self.ctx is not None
        write_info(self.log_dir, info, self._config)

    def save_error(self, text: str) -> None:
        self.save_metadata_text(layout.ERROR_LOG, text)

    def save_metadata_text(self, name: str, text: str) -> None:
        check_log_name(name, "metadata file name")
        self._require_dir()
        assert self.run is not None
        atomic_write_text(self.run.metadata / name, text)

    def _beat(self) -> None:
        assert self.run is not None
        path = self.run.heartbeat
        try:
            os.utime(path, follow_symlinks=False)  # a link planted later: its own mtime
        except FileNotFoundError:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            os.close(fd)

    def _tick(self) -> None:
        """Background: flush metrics every ``flush_interval_s``, beat every
        ``heartbeat_interval_s``, so an idle run still persists what it logged."""
        since_beat = 0.0
        while not self._stop.wait(self.flush_interval_s):
            self.flush()
            since_beat += self.flush_interval_s
            if since_beat >= self.heartbeat_interval_s:
                since_beat = 0.0
                try:
                    self._beat()
                except OSError:
                    pass

    def flush(self) -> None:
        """Write every buffered metric record now."""
        for writer in list(self._writers.values()):
            writer.flush()

    def end_run(self, ctx: Context, status: str) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if self._streams is not None:
            self._streams.stop()
            self._streams = None
        self._beat()
        if self._lock is not None:
            self._lock.release()

    def _require_dir(self) -> Path:
        if self.log_dir is None:
            raise LogDirError("the logger is used before its run started")
        return self.log_dir

    # -- metrics ------------------------------------------------------------------------
    def log_metrics(self, metrics: dict[str, Any], log_name: str = "train", step: Any = None):
        """Append ``metrics`` (scalars) to ``metrics/<log_name>.json``; ``step`` is stored
        as the record's ``step`` key."""
        writer = self._writers.get(log_name)
        if writer is None:
            writer = self._open_writer(log_name)
        record = writer.write(metrics, step)
        hook = self._metrics_hook
        if hook is not None and hook.get_hookimpls():  # skip pluggy's call cost when unused
            hook(ctx=self.ctx, metrics=record, log_name=log_name, step=step)

    def _open_writer(self, log_name: str) -> MetricsWriter:
        check_log_name(log_name)
        self._require_dir()
        assert self.run is not None
        path, keys = self.run.metrics_file(log_name), self.run.keys_file(log_name)
        check_inside(self.run.root, path)
        check_inside(self.run.root, keys)
        writer = MetricsWriter(path, keys, log_name, self.flush_every)
        self._writers[log_name] = writer
        return writer

    # -- artifacts ----------------------------------------------------------------------
    def register_artifact_type(self, name: str, save: Any, load: Any, extension: str = "") -> None:
        """Teach the logger a new type: ``save(obj, path)``, ``load(path)``."""
        check_log_name(name, "artifact type name")
        self._artifact_types[name] = ArtifactType(name, save, load, extension)

    def _artifact_type(self, artifact_type: str) -> ArtifactType:
        try:
            return self._artifact_types[artifact_type]
        except KeyError:
            known = ", ".join(sorted(self._artifact_types))
            raise ValueError(
                f"unknown artifact type {artifact_type!r}; known types: {known}. "
                "Add one with ctx.logger.register_artifact_type(name, save, load, extension)."
            ) from None

    def log_artifacts(self, artifact: Any, artifact_name: str, artifact_type: str) -> Path:
        """Save ``artifact`` atomically to ``artifacts/<type>/<name><extension>``."""
        kind = self._artifact_type(artifact_type)
        self._require_dir()
        assert self.run is not None
        base = self.run.artifacts / artifact_type
        path = artifact_path(self.run.root, base, artifact_name, kind.extension)
        atomic_save(kind, artifact, path)
        if self.ctx is not None:
            self.ctx.hook.mlxpy_after_artifact_logged(
                ctx=self.ctx, name=artifact_name, artifact_type=artifact_type, path=str(path)
            )
        return path

    def load_artifacts(self, artifact_name: str, artifact_type: str | None = None) -> Any:
        """Load an artifact; without ``artifact_type`` every type is tried but pickle and
        torch (loading them runs code from the file: ask for them by name)."""
        self._require_dir()
        assert self.run is not None
        kinds = (
            [self._artifact_type(artifact_type)]
            if artifact_type
            else list(self._artifact_types.values())
        )
        found = find_artifact(self.run.root, artifact_name, kinds, typed=bool(artifact_type))
        if found is None:
            raise FileNotFoundError(f"no artifact {artifact_name!r} in {self.run.artifacts}")
        return found[0].load(str(found[1]))

    # -- checkpoints --------------------------------------------------------------------
    def log_checkpoint(self, checkpoint: Any, log_name: str = "last_ckpt") -> Path:
        """Pickle ``checkpoint`` atomically to ``checkpoints/<log_name>.pkl`` (after flushing
        metrics, so metrics and checkpoint agree after a crash)."""
        check_log_name(log_name, "checkpoint name")
        self.flush()
        kind = self._artifact_types["pickle"]
        self._require_dir()
        assert self.run is not None
        path = self.run.checkpoint(log_name)
        check_inside(self.run.root, path)
        atomic_save(kind, checkpoint, path)
        if self.ctx is not None:
            self.ctx.hook.mlxpy_after_checkpoint_logged(ctx=self.ctx, name=log_name, path=str(path))
        return path

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


__all__ = ["ConfigChangedWarning", "DefaultLogger", "Logger", "write_info"]
