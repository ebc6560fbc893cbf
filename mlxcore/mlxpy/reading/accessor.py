"""``runs.mlxpy``: lazily load metrics and artifacts of selected runs, and aggregate them."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlxpy.errors import MlxpyError, MlxpyWarning
from mlxpy.reading.index import SkippedRunsWarning
from mlxpy.rundir.artifacts import BUILTIN_ARTIFACT_TYPES, ArtifactType, ExplicitTypeError
from mlxpy.rundir.columnar import read_copy
from mlxpy.rundir.layout import METRICS_DIR, METRICS_SUFFIX, RunDir
from mlxpy.rundir.manifest import ArtifactRecord, artifact_key, read_artifact_records
from mlxpy.rundir.metrics import (
    TIME_KEY,
    check_log_name,
    latest_per_step,
    rank_logs,
    read_records,
)
from mlxpy.rundir.safe import check_inside


class MissingArtifactTypeError(MlxpyError, ValueError):
    """An artifact's type is not installed here (its plugin is missing), or unknown."""

    def __init__(
        self,
        type_name: str,
        known: dict[str, ArtifactType],
        context: str = "",
        record: ArtifactRecord | None = None,
    ) -> None:
        provider = record.provider() if record is not None else ""
        if record is not None and provider:
            install = f"install {record.distribution} (it provided {provider} where it was logged)"
        else:
            install = "install the plugin that provides it"
        message = (
            f"artifact type {type_name!r} is not installed: {install}, "
            f"or pass artifact_type=mlxpy.ArtifactType({type_name!r}, save, load, "
            f"extension). Installed types: {', '.join(sorted(known))}"
        )
        super().__init__(f"{context}: {message}" if context else message)
        self.type_name = type_name
        self.distribution = record.distribution if record is not None else None


def artifact_types() -> dict[str, ArtifactType]:
    """The builtin artifact types and those of the installed plugins, by name (the plugins'
    own code, as installed here: nothing a run's files name is imported)."""
    from mlxpy.plugins import get_plugins

    types = {kind.name: kind for kind in BUILTIN_ARTIFACT_TYPES}
    for name, (kind, _) in get_plugins().artifact_types().items():
        types.setdefault(name, kind)
    return types


@pd.api.extensions.register_dataframe_accessor("mlxpy")
class RunsAccessor:
    """Operations on a frame of runs returned by :meth:`mlxpy.Reader.filter`."""

    def __init__(self, frame: pd.DataFrame) -> None:
        if "log_dir" not in frame.columns:
            raise AttributeError("runs.mlxpy works on frames returned by mlxpy.Reader.filter")
        if "log_id" in frame.columns:  # after runs.reset_index()
            frame = frame.set_index("log_id")
        self._runs = frame

    def varying_config(self) -> list[str]:
        """The config columns whose value differs between the runs."""
        cols = [c for c in self._runs.columns if c.startswith("config.")]
        return [c for c in cols if self._runs[c].astype(str).nunique(dropna=False) > 1]

    def metrics(
        self,
        log_name: str = "train",
        config: Sequence[str] | None = None,
        attempts: str = "latest",
        step: str = "step",
        all_ranks: bool = True,
    ) -> Any:
        """A long frame of the runs' records in ``log_name``: ``log_id``, the metric columns,
        and the ``config`` columns given (default: those that vary between the runs).

        A resumed run logs again the steps after its last checkpoint: ``attempts="latest"``
        gives one row per run and ``step``, the latest record winning (records without
        ``step`` all kept); ``attempts="all"`` every record on disk.

        A distributed run whose other ranks kept their own ``log_name``
        (``log_metrics(..., all_ranks=True)``) gives the rows of every rank, and the frame a
        ``rank`` column (after ``log_id``): the rank whose log a row comes from, 0 for the
        run's own log and for runs of one process; ``attempts`` applies to each rank's log.
        Without per-rank logs among the runs there is no ``rank`` column, as for runs of one
        process. ``all_ranks=False`` reads the run's own (rank 0's) log alone.
        """
        return self._long(log_name, config, attempts, step, all_ranks)

    def _long(
        self,
        log_name: str,
        config: Sequence[str] | None,
        attempts: str,
        step: str,
        all_ranks: bool,
        skip: Sequence[str] = (),
    ) -> pd.DataFrame:
        """:meth:`metrics`, without the record keys in ``skip`` (columns a caller drops)."""
        if attempts not in ("latest", "all"):
            raise ValueError(f"attempts must be 'latest' or 'all', got {attempts!r}")
        from mlxpy.reading.reader import INDEX_NAME, records_frame

        check_log_name(log_name)  # a clear error, not an OSError, for a bad or long name
        config = list(self.varying_config() if config is None else config)
        distributed = self._distributed() if all_ranks else {}
        if step == "step" and not distributed:
            frame = self._long_from_copies(log_name, skip)
            if frame is not None:
                for column in config:
                    frame[column] = frame["log_id"].map(self._runs[column])
                return frame
        decoded: list[list[dict[str, Any]]] = []  # each log's records, decoded once
        owners: list[Any] = []  # a log's run, once per log (repeated below per record)
        ranks: list[int] = []
        counts: list[int] = []
        for log_id, log_dir in zip(self._runs.index, self._runs["log_dir"], strict=True):
            run = RunDir(Path(log_dir))
            logs = [(0, run.metrics_file(log_name))]
            size = distributed.get(log_id)
            if size:
                try:
                    logs += rank_logs(run, log_name, size)
                except OSError as exc:  # a link in place of ranks/: only rank 0's log read
                    warnings.warn(
                        f"run {log_id}: the other ranks' {log_name} metrics skipped: {exc}",
                        SkippedRunsWarning,
                        2,
                    )
            for rank, path in logs:
                try:
                    rows = read_records(path, root=run.root)
                except FileNotFoundError:
                    continue
                except OSError as exc:  # a link, a FIFO, a huge file: that log is left out
                    whose = f"rank {rank}'s " if rank else ""
                    warnings.warn(
                        f"run {log_id}: {whose}{log_name} metrics skipped: {exc}",
                        SkippedRunsWarning,
                        2,
                    )
                    continue
                if attempts == "latest":
                    rows = latest_per_step(rows, step)
                decoded.append(rows)
                owners.append(log_id)
                ranks.append(rank)
                counts.append(len(rows))
        frame = records_frame(decoded, skip)
        frame.insert(0, INDEX_NAME, np.repeat(np.asarray(owners, dtype=np.int64), counts))
        if any(ranks):  # some run's other ranks kept this log
            _insert_rank(frame, np.repeat(np.asarray(ranks, dtype=np.int64), counts), log_name)
        for column in config:
            frame[column] = frame["log_id"].map(self._runs[column])
        return frame

    def _long_from_copies(self, log_name: str, skip: Sequence[str]) -> pd.DataFrame | None:
        """The long frame from the logs' compact copies (:mod:`mlxpy.rundir.columnar`), when
        every run that has the log has a copy covering it, all with the same typed keys;
        else None, and the logs are parsed. The frame is the parsed one, exactly: a copy
        exists only for a log whose records are all alike, one per step."""
        from mlxpy.reading.reader import INDEX_NAME

        parts: list[dict[str, Any]] = []
        owners: list[Any] = []
        counts: list[int] = []
        layout: list[tuple[str, Any]] | None = None
        name = log_name + METRICS_SUFFIX
        for log_id, log_dir in zip(self._runs.index, self._runs["log_dir"], strict=True):
            root = os.fspath(log_dir)
            path = os.path.join(root, METRICS_DIR, name)
            columns = read_copy(path, root)
            if columns is None:
                try:
                    os.lstat(path)
                except FileNotFoundError:
                    continue  # no such log in this run, as the parsed path skips it
                except OSError:
                    pass  # (metrics/ is a file...): the parsed path says why it skips it
                return None  # a log without a copy (or something odd): parse them all
            this = [(k, v.dtype) for k, v in columns.items()]
            if layout is None:
                layout = this
            elif this != layout:
                return None  # keys or types differ between runs: typed as a whole, parsed
            parts.append(columns)
            owners.append(log_id)
            counts.append(len(next(iter(columns.values()))))
        if layout is None or not sum(counts):
            return None
        data = {
            key: np.concatenate([part[key] for part in parts])
            for key, _ in layout
            if key not in skip
        }
        total = sum(counts)
        frame = pd.DataFrame(data, index=pd.RangeIndex(total), copy=False)
        frame.insert(0, INDEX_NAME, np.repeat(np.asarray(owners, dtype=np.int64), counts))
        return frame

    def _distributed(self) -> dict[Any, int]:
        """The world size of each distributed run, from its info (``world_size`` is written
        for those alone): the others' dirs are never listed for per-rank logs, and no rank
        beyond the run's world size is read."""
        sizes = self._runs.get("info.world_size")
        if sizes is None:
            return {}
        pairs = zip(sizes.index, sizes.tolist(), strict=True)
        return {i: int(n) for i, n in pairs if type(n) in (int, float) and n == n and n > 1}

    def artifact(self, name: str, artifact_type: str | ArtifactType | None = None) -> pd.Series:
        """The artifact ``name`` of each run (None where a run has none), loaded on demand.

        Without ``artifact_type`` the type each run recorded for it is used, but a pickle (or
        torch file) is never loaded unless asked for by name: it runs code. Types are the
        builtin ones and those of the installed plugins; a type the task registered itself
        (``register_artifact_type``) is passed here as the same :class:`mlxpy.ArtifactType`.
        A checkpoint is found too, by its name, when a run has no artifact so named: it is a
        pickle, so ask for it with ``artifact_type="pickle"``.
        """
        from mlxpy.rundir.artifacts import find_artifact

        known = artifact_types()
        if isinstance(artifact_type, ArtifactType):
            known[artifact_type.name] = artifact_type
            artifact_type = artifact_type.name
        if artifact_type is not None and artifact_type not in known:
            raise MissingArtifactTypeError(artifact_type, known)
        values = {}
        for log_id, log_dir in zip(self._runs.index, self._runs["log_dir"], strict=True):
            run = RunDir(Path(log_dir))
            record = read_artifact_records(run).get(artifact_key(name))
            wanted = artifact_type or (record.type if record else None)
            if wanted is not None and wanted not in known:
                context = f"run {log_id} logged {name!r} as {wanted!r}"
                raise MissingArtifactTypeError(wanted, known, context, record)
            kinds = [known[wanted]] if wanted else list(known.values())  # runs without manifest
            found = find_artifact(run.root, name, kinds, typed=artifact_type is not None)
            if found is None and wanted in (None, "pickle"):
                found = self._checkpoint_file(run, name, known["pickle"], typed=wanted is not None)
            values[log_id] = None if found is None else found[0].load(str(found[1]))
        return pd.Series(values, name=name, dtype=object)

    @staticmethod
    def _checkpoint_file(
        run: RunDir, name: str, pickled: ArtifactType, typed: bool
    ) -> tuple[ArtifactType, Path] | None:
        try:
            check_log_name(name, "checkpoint name")
        except ValueError:
            return None  # an artifact path such as 'a/b' is never a checkpoint name
        path = run.checkpoint(name)
        check_inside(run.root, path)  # never through a planted link
        if not path.is_file():
            return None
        if not typed:
            raise ExplicitTypeError(
                f"{name!r} is a checkpoint ({path}); loading one is unpickling, which runs "
                f'code from the file, so it is never chosen for you: pass artifact_type="pickle"'
            )
        return pickled, path

    def checkpoint(self, name: str = "last_ckpt") -> pd.Series:
        """The checkpoint ``name`` of each run (None where a run has none). Loading one is
        unpickling, which runs code from the file: call it only on runs you trust."""
        check_log_name(name, "checkpoint name")
        pickled = artifact_types()["pickle"]
        values = {}
        for log_id, log_dir in zip(self._runs.index, self._runs["log_dir"], strict=True):
            found = self._checkpoint_file(RunDir(Path(log_dir)), name, pickled, typed=True)
            values[log_id] = None if found is None else pickled.load(str(found[1]))
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
        from mlxpy.reading.plotting import plot_curves

        return plot_curves(self._runs, metric, by=by, over=over, logx=logx, logy=logy, ax=ax)

    def aggregate(
        self,
        log_name: str = "train",
        by: Sequence[str] = (),
        over: str | None = None,
        metrics: Sequence[str] | None = None,
        step: str = "step",
        attempts: str = "latest",
    ) -> pd.DataFrame:
        """Mean, std and count of each metric per group (``by``) and step, across the runs
        of a group (typically seeds: ``over="config.seed"``); each run counts once per step
        (see ``attempts`` in :meth:`metrics`), with its own log: a distributed run's rank 0's
        (the other ranks' logs are in ``metrics(log_name)``, by ``rank``)."""
        by = list(by)
        for column in [*by, *([over] if over else [])]:
            if column not in self._runs.columns:
                raise KeyError(f"no column {column!r} in these runs")
        columns = by + ([over] if over else [])
        # the wall-clock time is never aggregated: its column is not built
        drop = (
            [TIME_KEY] if TIME_KEY != step and (metrics is None or TIME_KEY not in metrics) else []
        )
        long = self._long(log_name, columns, attempts, step, False, drop)
        if long.empty:
            return pd.DataFrame()
        keys = by + ([step] if step in long.columns else [])
        skip = {"log_id", step, TIME_KEY, *by, *([over] if over else [])}  # not a metric
        names = (
            list(metrics)
            if metrics is not None
            else [
                c for c in long.columns if c not in skip and pd.api.types.is_numeric_dtype(long[c])
            ]
        )
        if keys and names and len(set(names)) == len(names):
            return _mean_std_count(long.groupby(keys, dropna=False)[names], names)
        grouped = long.groupby(keys, dropna=False)[names] if keys else long[names]
        result = grouped.agg(["mean", "std", "count"])
        if not keys:
            result = result.unstack().to_frame().T
        return result


def _mean_std_count(grouped: Any, names: list[str]) -> pd.DataFrame:
    """``grouped.agg(["mean", "std", "count"])``, the same frame, from one call of each
    reduction over all the columns (``agg`` with a list reduces column by column, and its
    per-call overhead was most of an aggregation's time)."""
    stats = {"mean": grouped.mean(), "std": grouped.std(), "count": grouped.count()}
    data = {(name, stat): stats[stat][name] for name in names for stat in stats}
    return pd.DataFrame(data, index=stats["mean"].index, copy=False)


def _insert_rank(frame: pd.DataFrame, ranks: np.ndarray, log_name: str) -> None:
    """The ``rank`` column of a frame of several ranks' records. A metric the task itself
    named ``rank`` gives way to it; where it said otherwise than the file, a warning says so."""
    if "rank" in frame.columns:
        own = frame.pop("rank")
        given = own.notna().to_numpy()
        if given.any() and (own[given].to_numpy() != ranks[given]).any():
            warnings.warn(
                f"the {log_name} metrics have a metric named 'rank' that differs from the rank "
                "that logged them: the 'rank' column is the logging rank's (rename the metric "
                "to keep it)",
                MlxpyWarning,
                3,
            )
    frame.insert(1, "rank", ranks)
