"""Learning curves (mean ± std over seeds, per group) and a self-contained HTML report.
matplotlib is an optional extra: ``pip install 'mlxpy[plot]'``."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from mlxpy.errors import MlxpyError
from mlxpy.rundir.metrics import NOT_RESULTS_LAST


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise MlxpyError(
            "plotting needs matplotlib, which is not installed: pip install 'mlxpy[plot]'"
        ) from None
    return plt


def split_metric(metric: str) -> tuple[str, str]:
    """``train.loss`` -> (log name ``train``, key ``loss``)."""
    log, _, key = metric.partition(".")
    if not log or not key:
        raise ValueError(f"a metric is written <log name>.<key>, e.g. 'train.loss'; got {metric!r}")
    return log, key


def group_label(by: Sequence[str], values: Any) -> str:
    if not by:
        return "all runs"
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(f"{k.removeprefix('config.')}={v}" for k, v in zip(by, values, strict=True))


def plot_curves(
    runs: Any,
    metric: str,
    by: Sequence[str] = (),
    over: str | None = None,
    logx: bool = False,
    logy: bool = False,
    ax: Any = None,
) -> Any:
    """One line per group (``by``): the mean over the runs of the group (e.g. seeds, named by
    ``over``) against the step, with a shaded ± std band. Returns the figure."""
    plt = _pyplot()
    log, key = split_metric(metric)
    agg = runs.mlxpy.aggregate(log, by=list(by), over=over, metrics=[key])
    if agg.empty:
        raise MlxpyError(f"no records of '{metric}' in these {len(runs)} runs")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    by = list(by)
    frames = agg.groupby(level=by, dropna=False) if by else [((), agg)]
    for values, frame in frames:
        steps = frame.index.get_level_values(-1).to_numpy(dtype=float)
        mean = frame[(key, "mean")].to_numpy(dtype=float)
        std = frame[(key, "std")].fillna(0.0).to_numpy(dtype=float)
        (line,) = ax.plot(steps, mean, label=group_label(by, values))
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2, color=line.get_color())
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    title = f"{metric}: mean ± std"
    ax.set_title(title + (f" over {over.removeprefix('config.')}" if over else ""))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.legend(title=", ".join(b.removeprefix("config.") for b in by) or None, fontsize="small")
    fig.tight_layout()
    return fig


def figure_bytes(fig: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt)
    return buffer.getvalue()


def html_report(runs: Any, figures: dict[str, Any], title: str = "mlxpy report") -> str:
    """One self-contained HTML file: the runs' table (config that varies, status, final
    metrics) and the curves as embedded PNG images."""
    columns = [
        "info.status",
        *runs.mlxpy.varying_config(),
        *[c for c in runs.columns if c.endswith(".last") and not c.endswith(NOT_RESULTS_LAST)],
    ]
    table = runs[columns].to_html(
        classes="runs", border=0, na_rep="", float_format=lambda v: f"{v:.4g}"
    )
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(figure_bytes(fig, "png")).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, fig in figures.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table.runs {{ border-collapse: collapse; font-size: 0.9em; }}
table.runs th, table.runs td {{ padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; }}
figure {{ display: inline-block; margin: 1em; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Runs ({len(runs)})</h2>
{table}
<h2>Curves</h2>
{images}
</body></html>
"""
