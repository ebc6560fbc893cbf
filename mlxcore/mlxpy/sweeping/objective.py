"""What an adaptive sweep optimises: one number per trial, read from its run's metrics.

``val.loss.min`` is the minimum of the key ``loss`` over the records of the metric log
``val`` (``ctx.logger.log_metrics({"loss": ...}, log_name="val")``); ``max`` its maximum,
``last`` its last value. The log name is the text before the first dot (a log whose name has
a dot cannot be an objective), the key everything between it and the last dot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlxpy.errors import ConfigError

REDUCTIONS = ("min", "max", "last")


@dataclass(frozen=True)
class Objective:
    log: str
    key: str
    reduce: str  # one of REDUCTIONS

    @classmethod
    def parse(cls, text: str, where: str = "sweep.objective") -> Objective:
        log, _, rest = str(text).partition(".")
        key, _, reduce = rest.rpartition(".")
        if not (log and key and reduce in REDUCTIONS):
            raise ConfigError(
                f"{where}: {text!r} is not an objective: write <log>.<key>.<min|max|last>, "
                "e.g. val.loss.min for the minimum of the key 'loss' logged with "
                "log_name='val'"
            )
        from mlxpy.rundir.metrics import check_log_name

        try:
            check_log_name(log)
        except ValueError as exc:
            raise ConfigError(f"{where}: {text!r}: {exc}") from None
        return cls(log, key, reduce)

    @property
    def direction(self) -> str | None:
        """``minimize`` for ``min``, ``maximize`` for ``max``, None for ``last`` (the sweeper
        must be told)."""
        return {"min": "minimize", "max": "maximize"}.get(self.reduce)

    def value(self, records: list[dict[str, Any]]) -> float | None:
        """The objective of a run's records; None when the key was never logged as a finite
        number."""
        values = []
        for record in records:
            value = record.get(self.key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value):
                    values.append(float(value))
        if not values:
            return None
        if self.reduce == "min":
            return min(values)
        if self.reduce == "max":
            return max(values)
        return values[-1]

    def of_run(self, run_dir: Path) -> float | None:
        """The objective of the run in ``run_dir`` (None when its log has no such key)."""
        from mlxpy.rundir.layout import RunDir
        from mlxpy.rundir.metrics import read_metrics

        path = RunDir(run_dir).metrics_file(self.log)
        try:
            records = read_metrics(path)
        except FileNotFoundError:
            return None
        return self.value(records)
