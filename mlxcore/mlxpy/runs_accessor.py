"""``runs.mlxpy``: lazily load metrics and artifacts of selected runs, and aggregate them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlxpy.rundir.layout import RunDir
from mlxpy.rundir.metrics import read_records


@pd.api.extensions.register_dataframe_accessor("mlxpy")
class RunsAccessor:
    """Operations on a frame of runs returned by :meth:`mlxpy.Reader.filter`."""

    def __init__(self, frame: pd.DataFrame) -> None:
        if "log_dir" not in frame.columns:
            raise AttributeError("runs.mlxpy works on frames returned by mlxpy.Reader.filter")
        self._runs = frame

    def varying_config(self) -> list[str]:
        """The config columns whose value differs between the runs."""
        cols = [c for c in self._runs.columns if c.startswith("config.")]
        return [c for c in cols if self._runs[c].astype(str).nunique(dropna=False) > 1]

    def metrics(self, log_name: str = "train", config: Sequence[str] | None = None) -> Any:
        """A long frame of the runs' records in ``log_name``: ``log_id``, the metric columns,
        and the ``config`` columns given (default: those that vary between the runs)."""
        config = list(self.varying_config() if config is None else config)
        records: list[dict[str, Any]] = []
        owners: list[Any] = []
        for log_id, log_dir in zip(self._runs.index, self._runs["log_dir"], strict=True):
            run = RunDir(Path(log_dir))
            try:
                rows = read_records(run.metrics_file(log_name), root=run.root)
            except FileNotFoundError:
                continue
            records.extend(rows)
            owners.extend([log_id] * len(rows))
        frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
        frame.insert(0, "log_id", np.asarray(owners, dtype=object if not owners else None))
        for column in config:
            frame[column] = frame["log_id"].map(self._runs[column])
        return frame

    def artifact(self, name: str, artifact_type: str | None = None) -> pd.Series:
        """The artifact ``name`` of each run (None where a run has none), loaded on demand.
        Without ``artifact_type`` a pickle (or torch file) is never loaded: ask for it."""
        from mlxpy.artifacts import BUILTIN_ARTIFACT_TYPES, find_artifact

        kinds = [k for k in BUILTIN_ARTIFACT_TYPES if artifact_type in (None, k.name)]
        if not kinds:
            known = ", ".join(k.name for k in BUILTIN_ARTIFACT_TYPES)
            raise ValueError(f"unknown artifact type {artifact_type!r}; known types: {known}")
        values = {}
        for log_id, log_dir in zip(self._runs.index, self._runs["log_dir"], strict=True):
            found = find_artifact(Path(log_dir), name, kinds, typed=artifact_type is not None)
            values[log_id] = None if found is None else found[0].load(str(found[1]))
        return pd.Series(values, name=name, dtype=object)

    def plot(
        self,
        metric: str,
        by: Sequence[str] = (),
        over: str | None = None,
        logx: bool = False,
        logy: bool = False,
        ax: Any = None,
    ) -> Any:
        """Learning curves of ``metric`` (``train.loss``): mean ± std per group against the
        step; returns the matplotlib figure (``pip install 'mlxpy[plot]'``)."""
        from mlxpy.plotting import plot_curves

        return plot_curves(self._runs, metric, by=by, over=over, logx=logx, logy=logy, ax=ax)

    def aggregate(
        self,
        log_name: str = "train",
        by: Sequence[str] = (),
        over: str | None = None,
        metrics: Sequence[str] | None = None,
        step: str = "step",
    ) -> pd.DataFrame:
        """Mean, std and count of each metric per group (``by``) and step, across the runs
        of a group (typically seeds: ``over="config.seed"``)."""
        by = list(by)
        for column in [*by, *([over] if over else [])]:
            if column not in self._runs.columns:
                raise KeyError(f"no column {column!r} in these runs")
        long = self.metrics(log_name, config=by + ([over] if over else []))
        if long.empty:
            return pd.DataFrame()
        keys = by + ([step] if step in long.columns else [])
        skip = {"log_id", step, *by, *([over] if over else [])}
        names = (
            list(metrics)
            if metrics is not None
            else [
                c for c in long.columns if c not in skip and pd.api.types.is_numeric_dtype(long[c])
            ]
        )
        grouped = long.groupby(keys, dropna=False)[names] if keys else long[names]
        result = grouped.agg(["mean", "std", "count"])
        if not keys:
            result = result.unstack().to_frame().T
        return result
