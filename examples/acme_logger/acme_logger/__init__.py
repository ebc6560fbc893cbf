"""A complete third-party mlxpy logger in one module: a class, a registration hook, and the
entry point in pyproject.toml. Select it with ``logger.name: AcmeLogger``."""

from __future__ import annotations

import csv
from typing import Any

import mlxpy


class AcmeLogger(mlxpy.DefaultLogger):
    """Everything DefaultLogger does, plus ``metrics/<log>.csv`` for spreadsheet users."""

    name = "AcmeLogger"

    def __init__(self, delimiter: str = ",", **kwargs: Any) -> None:
        super().__init__(**kwargs)  # DefaultLogger's settings stay valid in mlxpy.yaml
        self.delimiter = delimiter

    def log_metrics(self, metrics: dict[str, Any], log_name: str = "train", step: Any = None):
        super().log_metrics(metrics, log_name, step)
        assert self.log_dir is not None
        path = self.log_dir / "metrics" / f"{log_name}.csv"
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.writer(handle, delimiter=self.delimiter)
            if new:
                writer.writerow(["step", *metrics])
            writer.writerow([step, *metrics.values()])

    @mlxpy.hookimpl
    def mlxpy_after_run(self, ctx: Any, status: str) -> None:
        print(f"acme: run {ctx.info.log_id} ended {status}")


@mlxpy.hookimpl
def mlxpy_register_loggers() -> list[type]:
    return [AcmeLogger]
