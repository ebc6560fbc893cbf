"""WandbLogger: everything DefaultLogger does (the local run dir stays the record and the
Reader works on it), mirrored to a W&B run whose id is derived from the run dir, so a resumed
or requeued run continues the same W&B run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal, cast

from mlxpy import DefaultLogger, RunStatus

#: what ``wandb.init(mode=...)`` takes from this logger (empty: wandb's own default)
WandbMode = Literal["online", "offline", "disabled"]


def wandb_run_id(log_dir: str) -> str:
    """A stable W&B run id for a run dir: the same after every restart of the run."""
    return hashlib.sha1(str(Path(log_dir).resolve()).encode()).hexdigest()[:16]


class WandbLogger(DefaultLogger):
    """Mirrors config, run info, metrics (each log name with its own step axis), optionally
    artifacts and checkpoints, and the final status to W&B. ``mode``: online, offline or
    disabled (empty: wandb's own default, e.g. the WANDB_MODE variable)."""

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
        self._wandb: Any = None
        self._steps: set[str] = set()

    def start_run(self, ctx: Any) -> None:
        super().start_run(ctx)
        import wandb  # only now: selecting another logger never imports wandb

        assert self.log_dir is not None
        run_id = wandb_run_id(str(self.log_dir))
        self._wandb = wandb.init(
            project=self.project,
            entity=self.entity or None,
            mode=cast("WandbMode | None", self.mode or None),  # checked in __init__
            id=run_id,
            resume="allow",
            name=self.run_name or str(self.log_id),
            group=self.group or ctx.info.get("launch_id"),
            job_type=self.job_type or None,
            tags=self.tags or None,
            dir=str(self.log_dir),
            config={"config": ctx.config_dict(), "info": _plain(dict(ctx.info))},
        )
        ctx.info.wandb = {
            "run_id": run_id,
            "project": self.project,
            "mode": self.mode or "default",
            "url": self._wandb.url,
        }

    def log_metrics(self, metrics: dict[str, Any], log_name: str = "train", step: Any = None):
        super().log_metrics(metrics, log_name, step)
        if self._wandb is None:
            return
        axis = f"{log_name}/step"
        if log_name not in self._steps:  # each log name gets its own x axis
            self._wandb.define_metric(axis)
            self._wandb.define_metric(f"{log_name}/*", step_metric=axis)
            self._steps.add(log_name)
        payload = {
            f"{log_name}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float, bool))
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
            self._wandb.summary["mlxpy_status"] = status
            self._wandb.finish(exit_code=0 if status == RunStatus.COMPLETE else 1)
            self._wandb = None
        super().end_run(ctx, status)


def _plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data if isinstance(data, (str, int, float, bool, type(None))) else str(data)
