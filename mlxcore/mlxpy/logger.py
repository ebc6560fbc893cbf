"""Loggers store each run in its own directory; :class:`DefaultLogger` is the builtin one."""

from __future__ import annotations

import json
import os
import re
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlxpy._files import atomic_write_text, atomic_write_yaml
from mlxpy.component import Component
from mlxpy.errors import LogDirError

if TYPE_CHECKING:
    from mlxpy.context import Context

METADATA_DIR = "metadata"
METRICS_DIR = "metrics"
_LOG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


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

    @abstractmethod
    def log_metrics(
        self, metrics: dict[str, Any], log_name: str = "train", step: Any = None
    ) -> None:
        """Append one record of scalar metrics to the log ``log_name``."""


class DefaultLogger(Logger):
    """Stores everything as files under ``parent_log_dir/<log id>/``.

    Ids are claimed with an exclusive ``mkdir``, so simultaneous launches never share a dir.
    """

    name = "DefaultLogger"

    def __init__(
        self,
        parent_log_dir: str = "./logs",
        forced_log_id: int = -1,
        log_streams_to_file: bool = False,
    ) -> None:
        self.parent_log_dir = parent_log_dir
        self.forced_log_id = forced_log_id
        self.log_streams_to_file = log_streams_to_file
        self.ctx: Context | None = None

    # -- run directory ------------------------------------------------------------------
    def start_run(self, ctx: Context) -> None:
        self.ctx = ctx
        parent = Path(os.path.expanduser(self.parent_log_dir))
        if not parent.is_absolute():
            parent = Path(ctx.info.script_path).parent / parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.log_id, self.log_dir = self._claim(parent.resolve())
            (self.log_dir / METADATA_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            raise LogDirError(
                f"cannot create a run directory in {parent} (logger.parent_log_dir): {exc}"
            ) from exc
        ctx.info.log_id = self.log_id
        ctx.info.log_dir = str(self.log_dir)
        self._write_yaml("config.yaml", ctx.config_dict())
        self._write_yaml("mlxpy.yaml", ctx.mlxpy_dict())

    def _claim(self, parent: Path) -> tuple[int, Path]:
        if self.forced_log_id >= 0:
            log_dir = parent / str(self.forced_log_id)
            log_dir.mkdir(exist_ok=True)
            return self.forced_log_id, log_dir
        candidate = 1 + max(
            (int(e.name) for e in os.scandir(parent) if e.name.isdigit() and e.is_dir()),
            default=0,
        )
        while True:
            try:
                (parent / str(candidate)).mkdir()
                return candidate, parent / str(candidate)
            except FileExistsError:  # another launch won this id: take the next one
                candidate += 1

    def _write_yaml(self, name: str, data: Any) -> None:
        assert self.log_dir is not None
        atomic_write_yaml(self.log_dir / METADATA_DIR / name, data)

    def save_info(self, info: dict[str, Any]) -> None:
        self._write_yaml("info.yaml", info)

    def save_error(self, text: str) -> None:
        assert self.log_dir is not None
        atomic_write_text(self.log_dir / METADATA_DIR / "error.log", text)

    # -- metrics ------------------------------------------------------------------------
    def log_metrics(
        self, metrics: dict[str, Any], log_name: str = "train", step: Any = None
    ) -> None:
        if self.log_dir is None:
            raise LogDirError("log_metrics() called before the run started")
        if not _LOG_NAME.match(log_name or "") or ".." in log_name:
            raise ValueError(
                f"invalid log name {log_name!r}: use letters, digits, '_', '-' or '.', "
                "no path separators"
            )
        record = dict(metrics)
        if step is not None:
            record["step"] = step
        line = json.dumps(record, allow_nan=True)
        metrics_dir = self.log_dir / METRICS_DIR
        metrics_dir.mkdir(exist_ok=True)
        with open(metrics_dir / f"{log_name}.json", "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        if self.ctx is not None:
            self.ctx.hook.mlxpy_after_metrics_logged(
                ctx=self.ctx, metrics=record, log_name=log_name, step=step
            )
