"""The explorer's data document (payload format 1, docs/explorer.md): the runs' columns, their
curves downsampled to a shared grid per metric, and full-resolution mean/std bands.

Metrics are read through the Reader's own accessor (``runs.mlxpy.metrics``), so the run
directory's safety rules (no links followed, size limits) hold here too. pandas and numpy are
imported when a payload is built, never at ``import mlxpy``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mlxpy._version import __version__
from mlxpy.errors import MlxpyError
from mlxpy.rundir.metrics import TIME_KEY

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlxpy.reading.reader import Reader

FORMAT = 1
#: the per-run point budget's bounds (``default_points``)
MAX_POINTS = 500
MIN_POINTS = 20
#: values in a report, about: runs x metrics x points stays under it by default
VALUE_BUDGET = 400_000
STEP = "step"

#: one run's curves: metric -> (steps, values, seconds since the log's first record), sorted
#: by step, one entry per step; 1-D numpy arrays
RunCurves = dict[str, "tuple[np.ndarray, np.ndarray, np.ndarray]"]


class UnknownMetricError(MlxpyError, ValueError):
    """A metric asked for (``--metrics``) is logged by none of the runs."""


#: columns a report leaves out: where the run lives (paths, its uid), which says nothing about
#: results and is most of a large table's bytes; and the wall-clock summaries other than the
#: last record's time
LEFT_OUT = (
    "log_dir",
    "info.log_dir",
    "info.uid",
    "info.script_path",
    "info.project_dir",
    "info.config_dir",
)
_TIME_FIELDS_KEPT = ("last",)


def _shown(name: str, runs: pd.DataFrame) -> bool:
    """Whether the report holds the column ``name`` (see :data:`LEFT_OUT`)."""
    if name in LEFT_OUT:
        return False
    marker = f".{TIME_KEY}."
    if marker in name:
        return name.rsplit(".", 1)[-1] in _TIME_FIELDS_KEPT
    return True


def default_points(runs: int, metrics: int) -> int:
    """The per-run point budget: a 10,000-run report stays a few MB."""
    return min(MAX_POINTS, max(MIN_POINTS, VALUE_BUDGET // max(1, runs * metrics)))


def metric_names(runs: pd.DataFrame) -> list[str]:
    """The ``<log>.<key>`` metrics the runs' summaries name (numeric keys; never ``step`` nor
    ``_time``), from the Reader's ``<log>.rows`` and ``<log>.<key>.count`` columns."""
    import pandas as pd

    logs = sorted((c[: -len(".rows")] for c in runs.columns if c.endswith(".rows")), key=len)
    found: set[str] = set()
    for column in runs.columns:
        if not column.endswith(".count"):
            continue
        name = column[: -len(".count")]
        owners = [log for log in logs if name.startswith(log + ".")]
        if not owners:
            continue
        log = owners[-1]  # the longest log name that prefixes it (log names may hold dots)
        key = name[len(log) + 1 :]
        if key in (STEP, TIME_KEY):
            continue
        last = runs.get(f"{name}.last")
        if last is not None and not pd.api.types.is_numeric_dtype(last.dtype):
            if pd.to_numeric(last, errors="coerce").notna().sum() == 0:
                continue  # a text key: no curve
        found.add(name)
    return sorted(found)


def _split_metric(name: str, logs: Sequence[str]) -> tuple[str, str]:
    owners = [log for log in sorted(logs, key=len) if name.startswith(log + ".")]
    if not owners:
        raise UnknownMetricError(f"{name!r} is no metric of these runs")
    return owners[-1], name[len(owners[-1]) + 1 :]


def _logs(runs: pd.DataFrame) -> list[str]:
    return [c[: -len(".rows")] for c in runs.columns if c.endswith(".rows")]


def _read_curves(runs: pd.DataFrame, names: Sequence[str]) -> dict[Any, RunCurves]:
    """Every run's curves of ``names``, one read of each log for all the runs."""
    import numpy as np
    import pandas as pd

    logs = _logs(runs)
    by_log: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        log, key = _split_metric(name, logs)
        by_log.setdefault(log, []).append((name, key))
    out: dict[Any, RunCurves] = {log_id: {} for log_id in runs.index}
    for log, keys in by_log.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a skipped log is left out, as the Reader says
            long = runs.mlxpy.metrics(log, config=[], all_ranks=False)
        if STEP not in long.columns or long.empty:
            continue
        steps = pd.to_numeric(long[STEP], errors="coerce").to_numpy(dtype=float)
        times = (
            pd.to_numeric(long[TIME_KEY], errors="coerce").to_numpy(dtype=float)
            if TIME_KEY in long.columns
            else np.full(len(long), np.nan)
        )
        ids = long["log_id"].to_numpy()
        d_id, d_step = np.diff(ids), np.diff(steps)
        if bool(((d_id > 0) | ((d_id == 0) & (d_step > 0))).all()):
            order = np.arange(len(ids))  # as logged: by run, then by step (no sort needed)
        else:
            order = np.lexsort((steps, ids))
        ids, steps, times = ids[order], steps[order], times[order]
        bounds = np.flatnonzero(np.diff(ids)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(ids)]))
        # each run's seconds since its first record, for all runs at once (fmin skips NaN)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            firsts = np.fmin.reduceat(times, starts) if len(starts) else starts
        since = times - np.repeat(firsts, ends - starts)
        owners = ids[starts].tolist()
        for name, key in keys:
            if key not in long.columns:
                continue
            values = pd.to_numeric(long[key], errors="coerce").to_numpy(dtype=float)[order]
            keep = ~np.isnan(values) & ~np.isnan(steps)
            every = bool(keep.all())
            for owner, start, end in zip(owners, starts.tolist(), ends.tolist(), strict=True):
                if every:  # views, no copies: the common case
                    out[owner][name] = (steps[start:end], values[start:end], since[start:end])
                    continue
                k = keep[start:end]
                if k.any():
                    out[owner][name] = (
                        steps[start:end][k],
                        values[start:end][k],
                        since[start:end][k],
                    )
    return out


def load_run_curves(reader: Reader, log_id: int, names: Sequence[str] | None = None) -> RunCurves:
    """One run's curves (every metric it logs, or ``names``): what the live server caches per
    run while the run's files are unchanged."""
    runs = reader.filter(f"log_id == {int(log_id)}")
    if runs.empty:
        return {}
    names = metric_names(runs) if names is None else [n for n in names if n in metric_names(runs)]
    return _read_curves(runs, names).get(runs.index[0], {})


def _cached_curves(
    runs: pd.DataFrame,
    names: Sequence[str],
    cache: dict[Any, tuple[Any, RunCurves]],
    signatures: dict[int, str],
) -> dict[Any, RunCurves]:
    """Every run's curves, re-reading only the runs whose files changed (the index's
    signature of the run, ``signatures``); ``cache`` is filled with what was read."""
    out: dict[Any, RunCurves] = {}
    stale: list[Any] = []
    sigs: dict[Any, Any] = {}
    for log_id in runs.index:
        sig = signatures.get(int(log_id))
        sigs[log_id] = sig
        hit = cache.get(log_id)
        if sig is not None and hit is not None and hit[0] == sig:
            out[log_id] = hit[1]
        else:
            stale.append(log_id)
    if stale:
        every = metric_names(runs.loc[stale])
        for log_id, curves in _read_curves(runs.loc[stale], every).items():
            cache[log_id] = (sigs[log_id], curves)
            out[log_id] = curves
    return {i: {n: c for n, c in out[i].items() if n in names} for i in runs.index}


def make_grid(steps: np.ndarray, points: int) -> np.ndarray:
    """Every distinct step when there are at most ``points`` of them, else ``points`` steps
    evenly spaced over their range, each rounded to the nearest step that exists."""
    import numpy as np

    distinct = np.unique(steps)
    if len(distinct) <= points:
        return distinct
    targets = np.linspace(distinct[0], distinct[-1], points)
    right = np.clip(np.searchsorted(distinct, targets), 1, len(distinct) - 1)
    left = right - 1
    nearer_left = (targets - distinct[left]) <= (distinct[right] - targets)
    return np.unique(np.where(nearer_left, distinct[left], distinct[right]))


def sample(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A run's value at each grid step: its last value at or before it; NaN before its first
    step and after its last one (the run has not reached that step)."""
    import numpy as np

    where = np.searchsorted(steps, grid, side="right") - 1
    out = values[np.clip(where, 0, None)].astype(float)
    out[(where < 0) | (grid > steps[-1])] = np.nan
    return out


def _b64_float32(values: np.ndarray) -> str:
    return base64.b64encode(values.astype("<f4").tobytes()).decode("ascii")


#: the uint16 code of "no value" in a curve's ``time``
NO_TIME = 65535


def _b64_times(seconds: np.ndarray) -> tuple[str, float]:
    """Seconds since each run's first record as uint16 steps of ``scale`` seconds (the
    longest run's time / 65534: a 10-hour run to the half second, ample for an x axis),
    65535 where there is none; half the bytes of float32."""
    import numpy as np

    finite = seconds[np.isfinite(seconds)]
    top = float(finite.max()) if finite.size else 0.0
    scale = top / (NO_TIME - 1) if top > 0 else 1.0
    codes = np.full(seconds.shape, NO_TIME, dtype="<u2")
    ok = np.isfinite(seconds)
    codes[ok] = np.clip(np.rint(seconds[ok] / scale), 0, NO_TIME - 1)
    return base64.b64encode(codes.tobytes()).decode("ascii"), scale


def _cell(value: Any) -> Any:
    """A frame value as JSON sees it: null for missing, lists as lists, datetimes as ISO
    strings, numbers as numbers (infinities kept), anything else as its text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_cell(v) for v in value]
    if hasattr(value, "isoformat"):
        try:
            return None if value != value else value.isoformat()
        except (TypeError, ValueError):
            return str(value)
    if hasattr(value, "item"):  # a numpy scalar
        return _cell(value.item())
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _column(series: pd.Series) -> list[Any]:
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype) and not series.hasnans:
        return [bool(v) for v in series.tolist()]
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        if pd.api.types.is_integer_dtype(series.dtype):
            return [None if v != v else int(v) for v in values.tolist()]
        return [None if v != v else v for v in values.tolist()]
    if isinstance(series.dtype, pd.StringDtype):  # text: at once, not value by value
        return series.to_numpy(dtype=object, na_value=None).tolist()  # type: ignore[call-overload]
    return [_cell(v) for v in series.tolist()]


def _constant(values: list[Any]) -> bool:
    """One value over all runs (``1`` and ``1.0`` differ, as in JSON); values are the JSON
    cells of :func:`_column` (None for missing), so plain equality decides."""
    first = values[0]
    kind = type(first)
    return all(type(v) is kind and v == first for v in values)


#: the default grouping keeps at most this many groups (bands), dropping the keys with the
#: most distinct values first
MAX_DEFAULT_GROUPS = 50


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def default_group_by(runs: pd.DataFrame, columns: dict[str, list[Any]]) -> list[str]:
    """The report's default grouping: the config columns that vary, except seeds
    (``config.seed``, any ``*.seed``) and keys whose every run has a value of its own (a run
    name, a tag): the bands then spread over the seeds. At most :data:`MAX_DEFAULT_GROUPS`
    groups: keys with many values are dropped first."""
    if len(runs) < 2:
        return []
    distinct: dict[str, int] = {}
    for name, values in columns.items():
        if not name.startswith("config.") or name == "config.seed" or name.endswith(".seed"):
            continue
        if _constant(values):
            continue
        count = len({(type(v), _hashable(v)) for v in values})
        if count < len(values):  # a value per run groups nothing
            distinct[name] = count
    chosen = list(distinct)
    while chosen:
        groups = {
            tuple((type(columns[c][i]), _hashable(columns[c][i])) for c in chosen)
            for i in range(len(runs))
        }
        if len(groups) <= MAX_DEFAULT_GROUPS:
            break
        chosen.remove(max(chosen, key=lambda c: (distinct[c], c)))
    return chosen


def _bands(
    curves: dict[Any, RunCurves],
    ids: list[Any],
    name: str,
    keys: list[tuple],
    grid: np.ndarray,
    points: int,
) -> list[dict[str, Any]]:
    """Mean, std (ddof 1), min, max and count per group and step, over every run's own
    record at that step (no resampling); given at every step, or at the grid's when there are
    more steps than ``points``."""
    import numpy as np
    import pandas as pd

    same = _same_steps_bands(curves, ids, name, keys, grid, points)
    if same is not None:
        return same
    parts_g, parts_s, parts_v = [], [], []
    members: dict[tuple, int] = {}
    codes: dict[tuple, int] = {}
    for log_id, key in zip(ids, keys, strict=True):
        code = codes.setdefault(key, len(codes))
        members[key] = members.get(key, 0) + 1
        curve = curves[log_id].get(name)
        if curve is None:
            continue
        parts_g.append(np.full(len(curve[0]), code))
        parts_s.append(curve[0])
        parts_v.append(curve[1])
    if not parts_g:
        return []
    frame = pd.DataFrame(
        {"g": np.concatenate(parts_g), "s": np.concatenate(parts_s), "v": np.concatenate(parts_v)}
    )
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = frame.groupby(["g", "s"], sort=True)["v"].agg(
            ["mean", "std", "min", "max", "count"]
        )
    out = []
    for key, code in codes.items():
        if code not in stats.index.get_level_values(0):
            continue
        rows = stats.xs(code, level="g")
        if len(rows) > points:
            rows = rows[rows.index.isin(grid)]
        out.append(
            _band_group(
                key,
                members[key],
                rows.index.to_numpy(dtype=float),
                rows["mean"].to_numpy(dtype=float),
                rows["std"].to_numpy(dtype=float),
                rows["min"].to_numpy(dtype=float),
                rows["max"].to_numpy(dtype=float),
                [int(c) for c in rows["count"].tolist()],
            )
        )
    return out


def _band_group(
    key: Any,
    runs: int,
    steps: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    count: list[int],
) -> dict[str, Any]:
    """One group's band as the payload holds it (docs/explorer.md, "A band group")."""
    return {
        "key": key,
        "runs": runs,
        "step": _numbers(steps),
        "mean": _numbers(mean),
        "std": _numbers(std),
        "min": _numbers(low),
        "max": _numbers(high),
        "count": count,
    }


def _same_steps_bands(
    curves: dict[Any, RunCurves],
    ids: list[Any],
    name: str,
    keys: list[tuple],
    grid: np.ndarray,
    points: int,
) -> list[dict[str, Any]] | None:
    """:func:`_bands` where every run logged the same steps, each with a value (a sweep's
    usual case): one matrix per group, reduced along the runs; None otherwise."""
    import numpy as np

    present = [(i, k, curves[i].get(name)) for i, k in zip(ids, keys, strict=True)]
    have = [(k, c) for _, k, c in present if c is not None]
    if not have:
        return None
    steps = have[0][1][0]
    for _, curve in have:
        if len(curve[0]) != len(steps) or not np.array_equal(curve[0], steps):
            return None
        if np.isnan(curve[1]).any():
            return None
    members: dict[tuple, int] = {}
    rows: dict[tuple, list[np.ndarray]] = {}
    for _, key, maybe in present:
        members[key] = members.get(key, 0) + 1
        if maybe is not None:
            rows.setdefault(key, []).append(maybe[1])
    keep = np.isin(steps, grid) if len(steps) > points else slice(None)
    shown = steps[keep]
    out = []
    for key in members:  # the groups in the order their first run comes
        if key not in rows:
            continue
        matrix = np.stack(rows[key])[:, keep]
        n = matrix.shape[0]
        std = matrix.std(axis=0, ddof=1) if n > 1 else np.full(matrix.shape[1], np.nan)
        out.append(
            _band_group(
                key,
                members[key],
                shown.astype(float),
                matrix.mean(axis=0),
                std,
                matrix.min(axis=0),
                matrix.max(axis=0),
                [n] * matrix.shape[1],
            )
        )
    return out


def _numbers(values: np.ndarray) -> list[Any]:
    """Floats for JSON: NaN as null, whole numbers as ints (steps)."""
    out: list[Any] = []
    for v in values.tolist():
        if v != v:
            out.append(None)
        elif v.is_integer() and abs(v) < 2**53:
            out.append(int(v))
        else:
            out.append(v)
    return out


def build_payload(
    reader: Reader,
    runs: pd.DataFrame | None = None,
    *,
    metrics: Sequence[str] | None = None,
    points: int | None = None,
    title: str = "",
    generation: int = 0,
    curves_cache: dict[Any, tuple[Any, RunCurves]] | None = None,
) -> dict[str, Any]:
    """The payload (format 1) of ``runs`` (a frame from ``reader.filter``; default: every
    run): columns, constant columns, downsampled curves, and the default grouping's bands.
    ``curves_cache`` (log_id -> (signature, RunCurves)) spares re-reading unchanged runs."""
    import numpy as np

    if runs is None:
        runs = reader.filter()
    if points is not None and points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    available = metric_names(runs)
    if metrics is None:
        names = available
    else:
        unknown = [m for m in metrics if m not in available]
        if unknown:
            known = ", ".join(available) or "none"
            raise UnknownMetricError(
                f"no run logs the metric(s) {', '.join(map(repr, unknown))}; "
                f"the runs' metrics: {known}"
            )
        names = list(dict.fromkeys(metrics))
    ids = [int(i) for i in runs.index.tolist()]
    columns = {str(name): _column(runs[name]) for name in runs.columns if _shown(str(name), runs)}
    constant = [n for n, v in columns.items() if len(ids) >= 2 and _constant(v)]
    budget = points if points is not None else default_points(len(ids), len(names))
    if curves_cache is not None:
        curves = _cached_curves(runs, names, curves_cache, reader.signatures())
    else:
        curves = _read_curves(runs, names)
    group_by = default_group_by(runs, columns)
    # each run's group as a number; the group's values from its first run (1, 1.0 and True
    # are three groups, as in JSON)
    codes: dict[tuple, int] = {}
    labels: list[tuple] = []
    keys: list[Any] = []
    for i in range(len(ids)):
        label = tuple(columns[c][i] for c in group_by)
        marker = tuple((type(v).__name__, _hashable(v)) for v in label)
        code = codes.get(marker)
        if code is None:
            code = codes[marker] = len(labels)
            labels.append(label)
        keys.append(code)
    curve_docs: dict[str, Any] = {}
    bands: dict[str, Any] = {}
    for name in names:
        per_run = [curves[i].get(name) for i in runs.index]
        present = [c for c in per_run if c is not None]
        if not present:
            continue
        grid = make_grid(np.concatenate([c[0] for c in present]), budget)
        values = np.full((len(ids), len(grid)), np.nan)
        times = np.full((len(ids), len(grid)), np.nan)
        # runs that logged the same steps (a sweep's usual case) are sampled as one matrix
        alike: dict[bytes, list[int]] = {}
        for row, curve in enumerate(per_run):
            if curve is not None:
                alike.setdefault(curve[0].tobytes(), []).append(row)
        for rows in alike.values():
            steps = per_run[rows[0]][0]  # type: ignore[index]
            where = np.searchsorted(steps, grid, side="right") - 1
            outside = (where < 0) | (grid > steps[-1])
            at = np.clip(where, 0, None)
            block_v = np.stack([per_run[r][1] for r in rows])[:, at]  # type: ignore[index]
            block_t = np.stack([per_run[r][2] for r in rows])[:, at]  # type: ignore[index]
            block_v[:, outside] = np.nan
            block_t[:, outside] = np.nan
            values[rows] = block_v
            times[rows] = block_t
        time_codes, time_scale = _b64_times(times.ravel())
        curve_docs[name] = {
            "grid": _numbers(grid),
            "values": _b64_float32(values.ravel()),
            "time": time_codes,
            "time_scale": time_scale,
        }
        groups = _bands(curves, list(runs.index), name, keys, grid, budget)
        for group in groups:
            group["key"] = [_cell(v) for v in labels[group["key"]]]
        bands[name] = {"group_by": group_by, "groups": groups}
    return {
        "format": FORMAT,
        "title": title,
        "source": str(reader.parent_log_dir),
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mlxpy": __version__,
        "generation": int(generation),
        "runs": {
            "ids": ids,
            "columns": {n: v for n, v in columns.items() if n not in constant},
            "constants": {n: columns[n][0] for n in constant},
        },
        "constant": constant,
        "curves": curve_docs,
        "points": budget,
        "bands": bands,
    }


_STRING_OR_INFINITY = re.compile(r'"(?:[^"\\]|\\.)*"|(-?)Infinity\b')
_HTML_SAFE = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _infinity(match: re.Match[str]) -> str:
    if match.group(0).startswith('"'):
        return match.group(0)
    return f"{match.group(1)}1e999"


def dumps(payload: dict[str, Any]) -> str:
    """The payload as JSON safe inside an HTML ``<script>`` block: ``<``, ``>``, ``&`` and
    U+2028/9 escaped (no ``</script>`` can end the block), infinities as ``1e999`` (which
    ``JSON.parse`` reads as Infinity), NaN never present (null)."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=True, separators=(",", ":"))
    if "NaN" in text:  # a NaN slipped past the conversions: JSON has none
        text = json.dumps(_no_nan(payload), ensure_ascii=False, separators=(",", ":"))
    if "Infinity" in text:
        text = _STRING_OR_INFINITY.sub(_infinity, text)
    for char, escaped in _HTML_SAFE.items():
        if char in text:
            text = text.replace(char, escaped)
    return text


def _no_nan(value: Any) -> Any:
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value
