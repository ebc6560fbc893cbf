"""``mlxpy diff``: what differs between runs: the config keys whose values are not all equal,
a few facts of each run (status, tags, duration) and the metric summaries side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlxpy.reading.index import read_run
from mlxpy.rundir.tags import TAGS_COLUMN

#: info keys shown for every run
INFO_SHOWN = ("info.status", "info.duration_s", "info.version_manager.commit", "info.rerun_of")
_SUMMARY = (".last", ".min", ".max", ".rows")


def _is_metric(key: str) -> bool:
    return not key.startswith(("config.", "info.")) and key.endswith(_SUMMARY)


def compare(run_dirs: list[Path]) -> dict[str, Any]:
    """``{"runs": [ids], "config": {key: [value per run]}, "info": {...}, "summaries": {...}}``;
    ``config`` holds only keys that differ (a key missing in a run is None there)."""
    rows = [read_run(str(path)) for path in run_dirs]
    config_keys = sorted({k for row in rows for k in row if k.startswith("config.")})
    config = {}
    for key in config_keys:
        values = [row.get(key) for row in rows]
        present = [key in row for row in rows]
        if not all(present) or any(_differ(values[0], v) for v in values[1:]):
            config[key[len("config.") :]] = values
    info = {key[len("info.") :]: [row.get(key) for row in rows] for key in INFO_SHOWN}
    info = {k: v for k, v in info.items() if any(x is not None for x in v)}
    info[TAGS_COLUMN] = [row.get(TAGS_COLUMN, []) for row in rows]
    metric_keys = sorted({k for row in rows for k in row if _is_metric(k)})
    metrics = {key: [row.get(key) for row in rows] for key in metric_keys}
    return {
        "runs": [int(p.name) for p in run_dirs],
        "config": config,
        "info": info,
        "summaries": metrics,
    }


def _differ(a: Any, b: Any) -> bool:
    if type(a) is not type(b) and not (type(a) in (int, float) and type(b) in (int, float)):
        return True
    return bool(a != b) and not (a != a and b != b)  # NaN equals NaN here


def text_table(result: dict[str, Any]) -> str:
    """The comparison as aligned columns, one per run."""
    header = ["", *(str(r) for r in result["runs"])]
    lines: list[list[str]] = [header]
    for title, section in (
        ("config", "config"),
        ("info", "info"),
        ("metric summaries", "summaries"),
    ):
        values = result[section]
        if section == "config" and not values:
            lines.append(["# config: no difference"])
            continue
        lines.append([f"# {title}"])
        for key, row in values.items():
            lines.append([key, *(_show(v) for v in row)])
    width = [max(len(line[i]) for line in lines if len(line) > i) for i in range(len(header))]
    out = []
    for line in lines:
        if len(line) == 1:
            out.append(line[0])
        else:
            out.append("  ".join(cell.ljust(width[i]) for i, cell in enumerate(line)).rstrip())
    return "\n".join(out)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
