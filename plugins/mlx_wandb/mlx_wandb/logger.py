"""WandbLogger: everything DefaultLogger does (the local run dir stays the record and the
Reader works on it), mirrored to a W&B run whose id is derived from the run dir, so a resumed
or requeued run continues the same W&B run.

A distributed job is one run dir, so one W&B run: rank 0 alone opens, logs to and finishes it
(the other ranks' calls are no-ops here, as their local logging is), unless ``shared``: then
every rank writes to that run in W&B's shared mode (online only)."""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from mlxpy import DefaultLogger, MlxpyWarning, RunStatus

#: what ``wandb.init(mode=...)`` takes from this logger (empty: wandb's own default)
WandbMode = Literal["online", "offline", "disabled"]


def wandb_run_id(log_dir: str) -> str:
    """A stable W&B run id for a run dir: the same after every restart of the run."""
    return hashlib.sha1(str(Path(log_dir).resolve()).encode()).hexdigest()[:16]


#: ``metadata/<this>``: rank 0 of a job in shared mode writes its W&B run id there once the run
#: is open; the other ranks wait for it before they join that run
SHARED_RUN_FILE = "wandb_run_id.txt"
_RUN_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def effective_mode(mode: str, env: Mapping[str, str] | None = None) -> str:
    """The mode ``wandb.init`` runs in: the logger's, else ``WANDB_MODE`` (``dryrun`` is
    offline; ``WANDB_DISABLED=true`` disables), else online."""
    if mode:
        return mode
    env = os.environ if env is None else env
    if env.get("WANDB_DISABLED", "").lower() in ("true", "1", "yes"):
        return "disabled"
    chosen = env.get("WANDB_MODE", "").lower() or "online"
    return "offline" if chosen == "dryrun" else chosen


def shared_settings(wandb: Any, rank: int) -> Any:
    """The ``wandb.Settings`` of rank ``rank`` writing to its job's run in shared mode: rank 0
    is the primary (it keeps the run's files and sets its final state), every rank's system
    metrics and console output are labelled ``rank<k>``."""
    return wandb.Settings(
        mode="shared",
        x_primary=rank == 0,
        x_label=f"rank{rank}",
        x_update_finish_state=rank == 0,
    )


class WandbLogger(DefaultLogger):
    """Mirrors config, run info, metrics (each log name with its own step axis), optionally
    artifacts and checkpoints, and the final status to W&B. ``mode``: online, offline or
    disabled (empty: wandb's own default, e.g. the WANDB_MODE variable). ``shared``: in a
    distributed job, every rank writes to the job's W&B run (W&B's shared mode, which needs
    W&B online: offline or disabled, rank 0 alone writes, with a warning)."""

    name = "WandbLogger"

    def __init__(
        self,
        project: str = "mlxpy",
        entity: str = "",
        mode: str = "",
        tags: list[str] | None = None,
        group: str = "",
        job_type: str = "",
        run_name: str = "",
        mirror_artifacts: bool = False,
        mirror_checkpoints: bool = False,
        shared: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("", "online", "offline", "disabled"):
            raise ValueError(f"logger.mode must be online, offline or disabled, got {mode!r}")
        self.project = project
        self.entity = entity
        self.mode = mode
        self.tags = list(tags or [])
        self.group = group
        self.job_type = job_type
        self.run_name = run_name
        self.mirror_artifacts = mirror_artifacts
        self.mirror_checkpoints = mirror_checkpoints
        self.shared = shared
        self._wandb: Any = None
        self._prefix = ""  # a rank other than 0 in shared mode: its keys are rank<k>/...
        self._steps: set[str] = set()

    def _sharing(self, ctx: Any) -> bool:
        """Whether every rank of this job writes to its W&B run: asked for, in a distributed
        job, and W&B online (shared mode needs the server)."""
        return self.shared and ctx.dist.distributed and effective_mode(self.mode) == "online"

    def start_run(self, ctx: Any) -> None:
        """Rank 0 (the core calls :meth:`join_run` on the others): open the job's W&B run,
        or resume it (``resume="allow"``): a requeued job has the same run dir, so the same
        id."""
        super().start_run(ctx)
        import wandb

        assert self.log_dir is not None
        sharing = self._sharing(ctx)
        if self.shared and ctx.dist.distributed and not sharing:
            mode = effective_mode(self.mode)
            if mode != "disabled":
                warnings.warn(
                    f"logger.shared: W&B's shared mode needs W&B online, and mode is {mode}: "
                    "only rank 0 writes to this job's W&B run (set logger.mode: online, or "
                    "logger.shared: false)",
                    MlxpyWarning,
                    2,
                )
        run_id = wandb_run_id(str(self.log_dir))
        self._wandb = wandb.init(
            project=self.project,
            entity=self.entity or None,
            mode="shared" if sharing else cast("WandbMode | None", self.mode or None),
            id=run_id,
            resume="allow",
            name=self.run_name or str(self.log_id),
            group=self.group or ctx.info.get("launch_id"),
            job_type=self.job_type or None,
            tags=self.tags or None,
            dir=str(self.log_dir),
            config={"config": ctx.config_dict(), "info": _plain(dict(ctx.info))},
            settings=shared_settings(wandb, 0) if sharing else None,
        )
        if sharing:
            # with this attempt's session: after a requeue, the other ranks wait for the
            # primary to open the run again, not for the id the last attempt left
            self.save_metadata_text(SHARED_RUN_FILE, f"{run_id} {self._session}\n")
        ctx.info.wandb = {
            "run_id": run_id,
            "project": self.project,
            "mode": "shared" if sharing else self.mode or "default",
            "url": self._wandb.url,
        }

    def join_run(self, ctx: Any) -> None:
        """A rank other than 0: nothing goes to W&B, unless ``shared`` (online): once rank
        0 has opened the job's W&B run, this rank writes to it too (the run's name, config
        and tags are rank 0's), its metrics under ``rank<k>/`` and its files in its own
        ``ranks/<k>/wandb/``."""
        super().join_run(ctx)
        if not self._sharing(ctx):
            return
        import wandb

        assert self.run is not None
        rank = ctx.dist.rank
        run_id = self._primary_run_id()
        self._prefix = f"rank{rank}/"
        self._wandb = wandb.init(
            project=self.project,
            entity=self.entity or None,
            mode="shared",
            id=run_id,
            dir=str(self.run.rank(rank).root),
            settings=shared_settings(wandb, rank),
        )

    def _primary_run_id(self) -> str:
        """The id of the W&B run rank 0 opened, once it has: W&B's shared mode wants the
        primary to create the run first. Rank 0 writes it in ``metadata/`` (its path to the
        run dir, which names the id, may differ from this node's)."""
        assert self.run is not None and self.log_dir is not None
        path = self.run.metadata / SHARED_RUN_FILE
        deadline = time.monotonic() + self.join_timeout_s
        while time.monotonic() < deadline:
            run_id = _read_run_id(path, self._session)
            if run_id is not None:
                return run_id
            time.sleep(0.2)
        run_id = wandb_run_id(str(self.log_dir))
        warnings.warn(
            f"rank 0 of run {self.log_id} did not record its W&B run in {path} within "
            f"{self.join_timeout_s:g} s; this rank writes to W&B run {run_id}",
            MlxpyWarning,
            2,
        )
        return run_id

    def log_metrics(
        self,
        metrics: dict[str, Any],
        log_name: str = "train",
        step: Any = None,
        all_ranks: bool = False,
    ):
        super().log_metrics(metrics, log_name, step, all_ranks)
        if self._wandb is None:
            return
        if self._prefix and not (all_ranks or self.all_ranks):
            return  # a rank other than 0 mirrors what it keeps itself, as in its local log
        axis = f"{self._prefix}{log_name}/step"
        if log_name not in self._steps:  # each log name gets its own x axis
            self._wandb.define_metric(axis)
            self._wandb.define_metric(f"{self._prefix}{log_name}/*", step_metric=axis)
            self._steps.add(log_name)
        payload = {
            f"{self._prefix}{log_name}/{k}": v
            for k, v in metrics.items()
            if isinstance(v, (int, float, bool))
        }
        if step is not None:
            payload[axis] = step
        self._wandb.log(payload)

    def _mirror(self, path: Path, name: str, kind: str) -> None:
        import wandb

        artifact = wandb.Artifact(name.replace("/", "-"), type=kind)
        artifact.add_file(str(path))
        self._wandb.log_artifact(artifact)

    def log_artifacts(self, artifact: Any, artifact_name: str, artifact_type: str) -> Path:
        path = super().log_artifacts(artifact, artifact_name, artifact_type)
        if self.mirror_artifacts and self._wandb is not None:
            self._mirror(path, artifact_name, artifact_type)
        return path

    def log_checkpoint(self, checkpoint: Any, log_name: str = "last_ckpt") -> Path:
        path = super().log_checkpoint(checkpoint, log_name)
        if self.mirror_checkpoints and self._wandb is not None:
            self._mirror(path, log_name, "checkpoint")
        return path

    def end_run(self, ctx: Any, status: str) -> None:
        if self._wandb is not None:
            if not self._prefix:  # rank 0's: the run's own summary
                self._wandb.summary["mlxpy_status"] = status
            self._wandb.finish(exit_code=0 if status == RunStatus.COMPLETE else 1)
            self._wandb = None
        super().end_run(ctx, status)


def _read_run_id(path: Path, session: str) -> str | None:
    """The W&B run id in ``path`` (a few bytes, never through a link or from a FIFO) that
    rank 0 wrote for this attempt (``session``), or None while there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.read(fd, 256).decode("ascii", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    run_id, _, written_for = text.partition(" ")
    if written_for.strip() != session:
        return None  # an earlier attempt's
    return run_id if 0 < len(run_id) <= 128 and set(run_id) <= _RUN_ID_CHARS else None


def _plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data if isinstance(data, (str, int, float, bool, type(None))) else str(data)
