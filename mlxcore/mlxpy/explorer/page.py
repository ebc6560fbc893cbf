"""The explorer page: one self-contained HTML string, every asset inlined (uPlot, the query
language, the explorer), the payload in a JSON block. No request leaves the page: its CSP
forbids any (``default-src 'none'``)."""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path
from typing import Any

_END_SCRIPT = re.compile(r"</(script)", re.IGNORECASE)
_END_STYLE = re.compile(r"</(style)", re.IGNORECASE)
STATIC = Path(__file__).parent / "static"
UPLOT = STATIC / "vendor" / "uplot"
#: the static report: inline scripts and styles, nothing fetched
REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
)
#: the live page (mlxpy ui): the payload from its own server, nothing else
LIVE_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:"
)


@cache
def _asset(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _script(source: str) -> str:
    """An inline script; ``</script`` written ``<\\/script`` (the same in a JS string or
    regex) so no text in it can end the block early."""
    return "<script>" + _END_SCRIPT.sub(r"<\\/\1", source) + "</script>"


def _style(source: str) -> str:
    return "<style>" + _END_STYLE.sub(r"<\\/\1", source) + "</style>"


BODY = """
<header>
  <div class="brand"><span class="logo">mlxpy</span><h1 id="title">mlxpy report</h1>
    <span id="source"></span></div>
  <div class="querybar">
    <input id="query" type="search" spellcheck="false" autocomplete="off"
      placeholder="filter runs, e.g. config.lr > 0.01 and info.status == &quot;COMPLETE&quot;">
    <span id="run-count"></span>
  </div>
  <div id="query-error" role="alert"></div>
</header>
<main>
  <section class="panel" id="chart-panel">
    <div class="controls">
      <label>metric <select id="metric"></select></label>
      <label>group by <select id="group-by" multiple></select></label>
      <button id="ungroup" type="button">no grouping</button>
      <label>band <select id="band">
        <option value="std">mean &#177; std</option><option value="sem">mean &#177; sem</option>
        <option value="minmax">min / max</option><option value="none">none</option></select></label>
      <label>x axis <select id="x-axis"><option value="step">step</option>
        <option value="time">wall time</option></select></label>
      <label>smoothing <span><input id="smoothing" type="range" min="0" max="0.99" step="0.01"
        value="0"> <span id="smoothing-value">0.00</span></span></label>
      <label class="inline"><input id="log-x" type="checkbox"> log x</label>
      <label class="inline"><input id="log-y" type="checkbox"> log y</label>
    </div>
    <div id="chart"></div>
    <div id="chart-note"></div>
  </section>
  <section class="panel" id="table-panel">
    <div class="table-tools">
      <h2>Runs</h2>
      <label class="inline"><input id="show-constant" type="checkbox"> constant columns</label>
      <label class="inline"><input id="show-details" type="checkbox"> all columns</label>
      <span class="spacer"></span>
      <button id="clear-selection" type="button" disabled>clear selection</button>
      <button id="compare" type="button" class="primary" disabled>Compare</button>
    </div>
    <div id="table-wrap"><table id="run-table"><thead></thead><tbody></tbody></table></div>
  </section>
  <section class="panel" id="comparison-panel" hidden>
    <div class="panel-head"><h2>Comparison</h2>
      <button id="close-comparison" type="button">close</button></div>
    <div style="overflow:auto"><table id="comparison"></table></div>
  </section>
</main>
<footer>Click a row to select a run, a curve to select its runs; drag on the chart to zoom,
double-click to reset.</footer>
"""


def _page(csp: str, title: str, data_block: str, body_attrs: str) -> str:
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        '<link rel="icon" href="data:,">',
        f"<title>{html.escape(title or 'mlxpy report')}</title>",
        _style(_asset(UPLOT / "uPlot.min.css")),
        _style(_asset(STATIC / "explorer.css")),
        "</head>",
        f"<body{body_attrs}>",
        BODY,
        data_block,
        _script(_asset(UPLOT / "uPlot.iife.min.js")),
        _script(_asset(STATIC / "query.js")),
        _script(_asset(STATIC / "explorer.js")),
        "</body></html>",
    ]
    return "\n".join(head)


def render_report(payload: dict[str, Any], title: str) -> str:
    """The static report: one HTML string holding ``payload`` and every asset."""
    from mlxpy.explorer.payload import dumps

    block = f'<script type="application/json" id="mlxpy-data">{dumps(payload)}</script>'
    generation = int(payload.get("generation", 0))
    return _page(REPORT_CSP, title, block, f' data-generation="{generation}"')


def render_live_page(token: str, interval: float = 2.0) -> str:
    """The live page of ``mlxpy ui``: no payload; it polls ``api/payload`` every ``interval``
    seconds (with the page's own query string, which carries ``token``, and ``since`` its
    generation, so an unchanged store costs a few bytes) and shows each new generation."""
    attrs = (
        f' data-live="1" data-payload-url="api/payload" data-token="{html.escape(token)}"'
        f' data-interval="{float(interval):g}"'
    )
    return _page(LIVE_CSP, "mlxpy ui", "", attrs)
