/* mlxpy results explorer: the run table, the curves (uPlot) and the comparison of runs.
 * Plain JS, no build step. Every string from the payload reaches the page through
 * textContent or attribute setters, never innerHTML: run dirs are untrusted.
 * Page contract (docs/explorer.md): window.mlxpy.explorer.{load, state}. */
(function () {
  "use strict";

  var ROW_HEIGHT = 30;          // px, fixed: the table renders only the rows in view
  var ROW_BUFFER = 12;          // rows above and below the view
  var MAX_CURVES = 200;         // ungrouped: at most this many run curves are drawn
  var CHART_HEIGHT = 380;       // px
  var BAD = { FAILED: 1, LOST: 1, INTERRUPTED: 1, TIMEOUT: 1, CANCELLED: 1 };
  var PALETTE = ["#3b6fb6", "#e8762b", "#3a9d5d", "#d64550", "#8a62c2", "#8c5a44",
                 "#d463a8", "#6b7280", "#b5a21c", "#1fa5b8"];
  var SEED = /(^|\.)seed$/;

  var P = null;                  // the payload
  var ui = {};                   // the page's elements
  var state = {
    visibleIds: [], seriesCount: 0, selected: [], ready: false,
    highlighted: [],             // runs whose curves are drawn highlighted
  };
  var view = {
    query: "", mask: null, sortCol: null, sortDir: 1, order: [], selected: new Set(),
    metric: null, groupBy: null, band: "std", xAxis: "step", smoothing: 0,
    logX: false, logY: false, showConstant: false, showDetails: false,
    comparing: null, chart: null, series: [], decoded: {},
    matched: [],                 // the rows the query selects, in the payload's order
    rowOf: new Map(),            // run id -> its row in the payload
    groupCodes: {},              // column -> each run's value as JSON (grouping), per payload
    rendered: new Map(),         // run id -> the table row shown for it (reused while valid)
    renderedFor: null,           // the columns those rows were built for
    width: null,                 // #chart's width, kept up to date by resize events
    scrollTop: 0,                // #table-wrap's, kept up to date by its scroll events
    viewHeight: null,            // #table-wrap's max-height (px), if it has one
  };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // ---------- values ----------

  function fmt(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") {
      if (value === Infinity) return "inf";
      if (value === -Infinity) return "-inf";
      if (Number.isInteger(value)) return String(value);
      var a = Math.abs(value);
      if (a !== 0 && (a < 1e-3 || a >= 1e6)) return value.toExponential(3);
      return String(Number(value.toPrecision(5)));
    }
    if (typeof value === "boolean") return value ? "true" : "false";
    if (Array.isArray(value)) return value.map(fmt).join(", ");
    return String(value);
  }

  function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

  function compare(a, b) {
    var an = a === null || a === undefined, bn = b === null || b === undefined;
    if (an || bn) return an === bn ? 0 : an ? 1 : -1;      // missing values last
    if (typeof a === "number" && typeof b === "number") return a < b ? -1 : a > b ? 1 : 0;
    if (typeof a === "boolean" && typeof b === "boolean") return (a ? 1 : 0) - (b ? 1 : 0);
    var sa = fmt(a), sb = fmt(b);
    return sa < sb ? -1 : sa > sb ? 1 : 0;
  }

  function bytesOf(b64) {
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(b64);
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }

  function decode(b64) { return new Float32Array(bytesOf(b64).buffer); }

  /* Seconds since each run's first record, stored as uint16 steps of c.time_scale seconds
   * (65535: no value). */
  function decodeTime(c) {
    var raw = new Uint16Array(bytesOf(c.time).buffer), out = new Float32Array(raw.length);
    for (var k = 0; k < raw.length; k++) out[k] = raw[k] === 65535 ? NaN : raw[k] * c.time_scale;
    return out;
  }

  /* A metric's decoded curves, decoded once per payload; the times only once the x axis
   * needs them. */
  function curve(metric) {
    if (!view.decoded[metric]) {
      var c = P.curves[metric], times = null;
      view.decoded[metric] = {
        grid: c.grid, values: decode(c.values),
        get time() { return times || (times = decodeTime(c)); },
      };
    }
    return view.decoded[metric];
  }

  /* Constant columns travel once (runs.constants); the page and the query language see every
   * column as one value per run. */
  function expandConstants(payload) {
    var constants = payload.runs.constants || {}, n = payload.runs.ids.length;
    Object.keys(constants).forEach(function (name) {
      payload.runs.columns[name] = new Array(n).fill(constants[name]);
    });
    delete payload.runs.constants;
  }

  // ---------- columns ----------

  function columnNames() { return Object.keys(P.runs.columns); }

  function metricNames() { return Object.keys(P.curves).sort(); }

  function isConstant(name) { return P.constant.indexOf(name) >= 0; }

  /* The table's columns: status and config first, then each metric's last value, then the
   * rest (behind "details"); constant ones only with #show-constant. */
  function tableColumns() {
    var names = columnNames(), metrics = metricNames(), main = [], rest = [];
    names.forEach(function (n) {
      if (n === "info.status") return;
      if (!view.showConstant && isConstant(n)) return;
      var summary = metrics.some(function (m) { return n === m + ".last"; });
      if (n.indexOf("config.") === 0 || summary || n === "info.duration_s" || n === "tags"
          || n === "info.error.type") main.push(n);
      else rest.push(n);
    });
    main.sort(function (a, b) {
      var ca = a.indexOf("config.") === 0 ? 0 : 1, cb = b.indexOf("config.") === 0 ? 0 : 1;
      return ca - cb || (a < b ? -1 : a > b ? 1 : 0);
    });
    return ["log_id", "info.status"].concat(main, view.showDetails ? rest : []);
  }

  function value(name, row) {
    if (name === "log_id") return P.runs.ids[row];
    var col = P.runs.columns[name];
    return col ? col[row] : null;
  }

  function numeric(name) {
    var col = name === "log_id" ? P.runs.ids : P.runs.columns[name] || [];
    for (var i = 0; i < col.length; i++) {
      if (col[i] !== null) return typeof col[i] === "number";
    }
    return false;
  }

  function label(name) {
    if (name === "log_id") return "id";
    if (name === "info.status") return "status";
    if (name.indexOf("config.") === 0) return name.slice(7);
    return name;
  }

  // ---------- query and order ----------

  function applyQuery() {
    var n = P.runs.ids.length, q = window.mlxpy && window.mlxpy.query;
    ui.queryError.textContent = "";
    ui.query.classList.remove("invalid");
    if (!view.query.trim() || !q) {
      view.mask = null;
    } else {
      try {
        view.mask = q.compile(view.query, columnNames())(P.runs);
      } catch (err) {
        var where = err && typeof err.position === "number" ? " (at " + err.position + ")" : "";
        ui.queryError.textContent = (err && err.message ? err.message : String(err)) + where;
        ui.query.classList.add("invalid");
        view.mask = new Uint8Array(n);
      }
    }
    var rows = [];
    for (var i = 0; i < n; i++) if (!view.mask || view.mask[i]) rows.push(i);
    view.matched = rows.slice();
    if (view.sortCol) {
      var col = view.sortCol, dir = view.sortDir;
      rows.sort(function (a, b) { return dir * compare(value(col, a), value(col, b)) || a - b; });
    }
    view.order = rows;
    state.visibleIds = rows.map(function (r) { return P.runs.ids[r]; });
    ui.runCount.textContent = rows.length + " of " + n + " runs";
  }

  // ---------- the table ----------

  function renderHead() {
    clear(ui.thead);
    var tr = el("tr");
    tr.appendChild(el("th", { "class": "swatch-col" }));
    view.columns.forEach(function (name) {
      var th = el("th", { "data-col": name, title: name }, label(name));
      if (numeric(name)) th.className = "num";
      if (view.sortCol === name) {
        th.classList.add(view.sortDir > 0 ? "sorted-asc" : "sorted-desc");
      }
      tr.appendChild(th);
    });
    ui.thead.appendChild(tr);
  }

  /* Only the rows in view are in the table, between two padding rows. A run's row is kept
   * while it stays in view and the columns are the same; only its selection and colour are
   * brought up to date, so the DOM changes only where the view did. */
  function renderRows() {
    // the scroll position and the view's height as last seen, not measured: a measure here
    // would lay out the page in the middle of an update
    var rows = view.order, height = view.viewHeight || ui.tableWrap.clientHeight || 600;
    var inView = Math.ceil(height / ROW_HEIGHT);
    // fewer rows than before: the browser will scroll back to the last ones
    var top = Math.min(view.scrollTop, Math.max(0, rows.length - inView) * ROW_HEIGHT);
    var first = Math.max(0, Math.floor(top / ROW_HEIGHT) - ROW_BUFFER);
    var last = Math.min(rows.length, Math.ceil((top + height) / ROW_HEIGHT) + ROW_BUFFER);
    var span = view.columns.length + 1, signature = view.columns.join("\u0000");
    if (view.renderedFor !== signature) { view.rendered = new Map(); view.renderedFor = signature; }
    var want = [], kept = new Map();
    if (first > 0) want.push(padRow(span, first * ROW_HEIGHT));
    for (var k = first; k < last; k++) {
      var r = rows[k], id = P.runs.ids[r], tr = view.rendered.get(id);
      if (!tr) tr = row(r);
      dressRow(tr, id);
      kept.set(id, tr);
      want.push(tr);
    }
    if (last < rows.length) want.push(padRow(span, (rows.length - last) * ROW_HEIGHT));
    if (!rows.length) {
      var none = el("tr", { "class": "empty" });
      none.appendChild(el("td", { colspan: span }, "No run matches the query."));
      want.push(none);
    }
    view.rendered = kept;
    var keep = new Set(want), node = ui.tbody.firstChild;
    while (node) {                      // what leaves the view goes first
      var next = node.nextSibling;
      if (!keep.has(node)) ui.tbody.removeChild(node);
      node = next;
    }
    node = ui.tbody.firstChild;
    want.forEach(function (tr) {        // then what stays is moved only if out of place
      if (tr === node) node = node.nextSibling;
      else ui.tbody.insertBefore(tr, node);
    });
  }

  function padRow(span, px) {
    var pad = el("tr", { "class": "pad" });
    pad.appendChild(el("td", { colspan: span, style: "height:" + px + "px" }));
    return pad;
  }

  /* The parts of a row that change without its run's values: selection and colour. */
  function dressRow(tr, id) {
    tr.classList.toggle("selected", view.selected.has(id));
    var colour = (view.colourOf && view.colourOf[id]) || "", sw = tr.firstChild;
    if ((sw.mlxpyColour || "") === colour) return;
    clear(sw);
    sw.mlxpyColour = colour;
    if (colour) {
      var dot = el("span", { "class": "swatch" });
      dot.style.background = colour;
      sw.appendChild(dot);
    }
  }

  function row(r) {
    var id = P.runs.ids[r], status = value("info.status", r);
    var tr = el("tr", { "data-run-id": String(id) });
    tr.className = "status-" + String(status || "UNKNOWN").replace(/[^A-Za-z_]/g, "_");
    if (BAD[status]) tr.classList.add("bad");
    tr.appendChild(el("td", { "class": "swatch-col" }));
    view.columns.forEach(function (name) {
      var v = value(name, r), td = el("td", null, fmt(v));
      if (name === "info.status") {
        td.textContent = "";
        td.appendChild(el("span", { "class": "badge" }, fmt(v) || "?"));
      } else if (typeof v === "number") td.className = "num";
      else if (v === null || v === undefined) td.className = "missing";
      if (typeof v === "string" && v.length > 40) td.title = v;
      tr.appendChild(td);
    });
    return tr;
  }

  function toggleRun(id, only) {
    if (only) view.selected.clear();
    if (view.selected.has(id)) view.selected.delete(id);
    else view.selected.add(id);
    syncSelection();
  }

  function syncSelection() {
    state.selected = Array.from(view.selected);
    ui.compare.disabled = view.selected.size < 2;
    ui.compare.textContent = view.selected.size >= 2
      ? "Compare " + view.selected.size + " runs" : "Compare (select 2+ runs)";
    ui.clearSel.disabled = view.selected.size === 0;
    renderChart();       // sets the colours the table's swatches show
    renderRows();
  }

  // ---------- the chart ----------

  /* Each run's value of ``name`` as JSON, computed once per payload: a group's key is the
   * JSON of its values, [v1,v2,...]. */
  function groupCodes(name) {
    var codes = view.groupCodes[name];
    if (!codes) {
      var n = P.runs.ids.length, seen = new Map();
      var col = name === "log_id" ? P.runs.ids : P.runs.columns[name] || [];
      codes = view.groupCodes[name] = new Array(n);
      for (var i = 0; i < n; i++) {
        var v = col[i], code = seen.get(v);
        if (code === undefined) {
          code = v === undefined ? "null" : JSON.stringify(v);
          if (v === null || typeof v !== "object") seen.set(v, code);
        }
        codes[i] = code;
      }
    }
    return codes;
  }

  function isDefaultGrouping(metric) {
    var b = P.bands[metric];
    if (!b || view.mask) return false;
    var a = b.group_by.slice().sort(), g = view.groupBy.slice().sort();
    return same(a, g) && view.xAxis === "step";
  }

  function ema(ys, alpha) {
    if (!alpha) return ys;
    var out = new Array(ys.length), acc = 0, weight = 0;
    for (var i = 0; i < ys.length; i++) {
      var y = ys[i];
      if (y === null || !isFinite(y)) { out[i] = y; continue; }
      acc = alpha * acc + (1 - alpha) * y;
      weight = alpha * weight + (1 - alpha);
      out[i] = acc / weight;
    }
    return out;
  }

  function runValues(c, r, len) {
    var out = new Array(len), base = r * len;
    for (var j = 0; j < len; j++) {
      var v = c.values[base + j];
      out[j] = v !== v ? null : v;
    }
    return out;
  }

  /* The x values: the grid's steps, or the mean over the drawn runs of the seconds since
   * each run's first record at that step (kept increasing). */
  function xValues(c, rows) {
    var len = c.grid.length;
    if (view.xAxis === "step") return c.grid.slice();
    var xs = new Array(len), prev = -Infinity;
    for (var j = 0; j < len; j++) {
      var sum = 0, n = 0;
      for (var k = 0; k < rows.length; k++) {
        var t = c.time[rows[k] * len + j];
        if (t === t) { sum += t; n++; }
      }
      var x = n ? sum / n : null;
      if (x !== null) { x = Math.max(x, prev); prev = x; }
      xs[j] = x;
    }
    return xs;
  }

  function groupStats(c, rows, len) {
    var mean = new Array(len), lo = new Array(len), hi = new Array(len), values = c.values;
    var count = new Uint32Array(len), sum = new Float64Array(len), sum2 = new Float64Array(len);
    var min = new Float64Array(len).fill(Infinity), max = new Float64Array(len).fill(-Infinity);
    for (var k = 0; k < rows.length; k++) {
      var base = rows[k] * len;
      for (var i = 0; i < len; i++) {
        var v = values[base + i];
        if (v !== v) continue;
        count[i]++; sum[i] += v; sum2[i] += v * v;
        if (v < min[i]) min[i] = v;
        if (v > max[i]) max[i] = v;
      }
    }
    for (var j = 0; j < len; j++) {
      var n = count[j], s = sum[j], s2 = sum2[j], mn = min[j], mx = max[j];
      if (!n) { mean[j] = lo[j] = hi[j] = null; continue; }
      var m = s / n, sd = n > 1 ? Math.sqrt(Math.max(0, (s2 - n * m * m) / (n - 1))) : 0;
      mean[j] = m;
      var w = view.band === "sem" ? sd / Math.sqrt(n) : sd;
      lo[j] = view.band === "minmax" ? mn : m - w;
      hi[j] = view.band === "minmax" ? mx : m + w;
    }
    return { mean: mean, lo: lo, hi: hi };
  }

  function bandStats(group, grid) {
    var at = new Map(), len = grid.length;
    grid.forEach(function (s, j) { at.set(s, j); });
    var mean = new Array(len).fill(null), lo = new Array(len).fill(null);
    var hi = new Array(len).fill(null);
    group.step.forEach(function (s, i) {
      var j = at.get(s);
      if (j === undefined || group.mean[i] === null) return;
      var m = group.mean[i], sd = group.std[i] === null ? 0 : group.std[i];
      var w = view.band === "sem" ? sd / Math.sqrt(group.count[i] || 1) : sd;
      mean[j] = m;
      lo[j] = view.band === "minmax" ? group.min[i] : m - w;
      hi[j] = view.band === "minmax" ? group.max[i] : m + w;
    });
    return { mean: mean, lo: lo, hi: hi };
  }

  function alpha(hex, a) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + a + ")";
  }

  function positive(ys, on) {
    if (!on) return ys;
    return ys.map(function (y) { return y !== null && y > 0 ? y : null; });
  }

  function dropChart() {
    if (view.chart) { view.chart.destroy(); view.chart = null; }
    view.chartShape = null;
    clear(ui.chart);
  }

  function renderChart() {
    view.series = [];
    view.colourOf = {};
    state.seriesCount = 0;
    state.highlighted = [];
    var metric = view.metric;
    if (!metric || !P.curves[metric] || typeof uPlot === "undefined") {
      dropChart();
      ui.chart.appendChild(el("p", { "class": "placeholder" },
        metricNames().length ? "No curve for this metric." : "These runs log no metric."));
      ui.chartNote.textContent = "";
      return;
    }
    var c = curve(metric), len = c.grid.length, rows = view.matched;
    var xs = xValues(c, rows), data = [xs], series = [{ label: view.xAxis === "step"
      ? "step" : "time (s)", value: function (u, v) { return v === null ? "" : fmt(v); } }];
    var bands = [], note = "", smooth = Number(view.smoothing), logY = view.logY;
    function line(lbl, ys, colour, width, meta, dash) {
      data.push(positive(ema(ys, smooth), logY));
      var s = { label: lbl, stroke: colour, width: width, spanGaps: true,
                points: { show: false }, value: function (u, v) { return v === null ? "" : fmt(v); } };
      if (dash) s.dash = [4, 3];
      series.push(s);
      view.series.push(meta);
      return data.length - 1;
    }
    var anySelected = view.selected.size > 0;
    if (!view.groupBy.length) {
      var drawn = rows.filter(function (r) { return view.selected.has(P.runs.ids[r]); });
      rows.forEach(function (r) {
        if (drawn.length < MAX_CURVES && !view.selected.has(P.runs.ids[r])) drawn.push(r);
      });
      drawn.sort(function (a, b) { return a - b; });
      drawn.forEach(function (r) {
        var id = P.runs.ids[r], colour = PALETTE[r % PALETTE.length];
        var sel = view.selected.has(id);
        view.colourOf[id] = colour;
        line("run " + id, runValues(c, r, len), anySelected && !sel ? alpha(colour, 0.25) : colour,
             sel ? 3 : 1.5, { kind: "run", runs: [id] });
        if (sel) state.highlighted.push(id);
      });
      state.seriesCount = drawn.length;
      if (rows.length > drawn.length) {
        note = drawn.length + " of " + rows.length + " runs drawn: group them to see all.";
      }
    } else {
      var groups = new Map(), codes = view.groupBy.map(groupCodes), nc = codes.length;
      for (var gk = 0; gk < rows.length; gk++) {
        var r = rows[gk], key = "[" + codes[0][r];
        for (var ci = 1; ci < nc; ci++) key += "," + codes[ci][r];
        key += "]";
        var members = groups.get(key);
        if (members) members.push(r); else groups.set(key, [r]);
      }
      var keys = Array.from(groups.keys()).sort(function (a, b) {
        var ka = JSON.parse(a), kb = JSON.parse(b);
        for (var i = 0; i < ka.length; i++) { var o = compare(ka[i], kb[i]); if (o) return o; }
        return 0;
      });
      var precomputed = isDefaultGrouping(metric) ? P.bands[metric].groups : null;
      keys.forEach(function (key, gi) {
        var members = groups.get(key), colour = PALETTE[gi % PALETTE.length];
        var values = JSON.parse(key), name = view.groupBy.map(function (col, i) {
          return label(col) + "=" + fmt(values[i]);
        }).join(" ");
        var stats = null;
        if (precomputed) {
          var found = precomputed.filter(function (g) { return same(g.key, values); })[0];
          if (found) stats = bandStats(found, c.grid);
        }
        if (!stats) stats = groupStats(c, members, len);
        var ids = members.map(function (r) { return P.runs.ids[r]; });
        ids.forEach(function (id) { view.colourOf[id] = colour; });
        var sel = ids.some(function (id) { return view.selected.has(id); });
        var m = line(name + " (" + members.length + ")", stats.mean, colour, sel ? 3 : 2,
                     { kind: "group", runs: ids });
        if (view.band !== "none") {
          var hiIdx = line(name + " upper", stats.hi, "transparent", 0, { kind: "band" });
          var loIdx = line(name + " lower", stats.lo, "transparent", 0, { kind: "band" });
          bands.push({ series: [hiIdx, loIdx], fill: alpha(colour, 0.16) });
        }
        void m;
      });
      state.seriesCount = keys.length;
      // the selected runs' own curves over their group's
      rows.forEach(function (r) {
        var id = P.runs.ids[r];
        if (!view.selected.has(id)) return;
        line("run " + id, runValues(c, r, len), view.colourOf[id], 1.5,
             { kind: "run", runs: [id] }, true);
        state.highlighted.push(id);
      });
      note = precomputed ? "Bands from every logged step of every run."
        : "Bands from the downsampled curves (" + len + " points per run).";
    }
    ui.chartNote.textContent = note;
    if (view.logX) {           // a log x axis has no room for steps <= 0
      var keep = xs.map(function (x) { return x !== null && x > 0; });
      data = data.map(function (ys) { return ys.filter(function (_, j) { return keep[j]; }); });
    }
    if (view.width === null) view.width = ui.chart.clientWidth;
    var width = Math.max(320, view.width || 800);
    var opts = {
      width: width, height: CHART_HEIGHT,
      scales: { x: { time: false, distr: view.logX ? 3 : 1 }, y: { distr: logY ? 3 : 1 } },
      axes: [
        { label: series[0].label, stroke: "#4b5563", grid: { stroke: "#eef0f3" },
          ticks: { stroke: "#e5e7eb" } },
        { label: metric, stroke: "#4b5563", grid: { stroke: "#eef0f3" },
          ticks: { stroke: "#e5e7eb" }, size: 64 },
      ],
      series: series, bands: bands,
      cursor: { focus: { prox: 24 }, drag: { x: true, y: false } },
      focus: { alpha: 0.3 },
      legend: { live: true },
    };
    // the same series drawn the same way: only the data changes (smoothing, a live update)
    var shape = JSON.stringify([view.logX, logY, metric, bands, series.map(function (s) {
      return [s.label, s.stroke, s.width, s.dash || null];
    })]);
    if (view.chart && view.chartShape === shape) {
      var u = view.chart;
      for (var si = 1; si < u.series.length; si++) {
        if (!u.series[si].show) u.setSeries(si, { show: true });
      }
      if (u.width !== width) u.setSize({ width: width, height: CHART_HEIGHT });
      u.setData(data);
      return;
    }
    dropChart();
    view.chartShape = shape;
    view.chart = new uPlot(opts, data, ui.chart);
    var legendRows = ui.chart.querySelectorAll(".u-legend tr.u-series");
    view.series.forEach(function (meta, i) {
      if (meta.kind === "band" && legendRows[i + 1]) legendRows[i + 1].style.display = "none";
    });
    view.chart.over.addEventListener("click", chartClick);
  }

  /* A click on the chart selects the run (or the group's runs) of the nearest curve. */
  function chartClick(ev) {
    var u = view.chart, idx = u.cursor.idx, top = u.cursor.top;
    if (idx === null || idx === undefined || top === undefined) return;
    var best = -1, dist = 30;
    view.series.forEach(function (meta, i) {
      if (meta.kind === "band" || !u.series[i + 1].show) return;
      var y = u.data[i + 1][idx];
      if (y === null || y === undefined) return;
      var d = Math.abs(u.valToPos(y, "y") - top);
      if (d < dist) { dist = d; best = i; }
    });
    if (best < 0) return;
    var ids = view.series[best].runs, all = ids.every(function (id) { return view.selected.has(id); });
    if (!ev.shiftKey && !ev.ctrlKey && !ev.metaKey) view.selected.clear();
    ids.forEach(function (id) { if (all) view.selected.delete(id); else view.selected.add(id); });
    syncSelection();
    scrollToRun(ids[0]);
  }

  function scrollToRun(id) {
    var k = view.rowOf.has(id) ? view.order.indexOf(view.rowOf.get(id)) : -1;
    if (k < 0) return;
    var top = k * ROW_HEIGHT, wrap = ui.tableWrap;
    if (top < wrap.scrollTop || top > wrap.scrollTop + wrap.clientHeight - 2 * ROW_HEIGHT) {
      wrap.scrollTop = Math.max(0, top - wrap.clientHeight / 3);
      view.scrollTop = wrap.scrollTop;
      renderRows();
    }
  }

  function focusRun(id) {
    var u = view.chart;
    if (!u) return;
    var i = -1;
    view.series.forEach(function (meta, k) {
      if (i < 0 && meta.kind !== "band" && meta.runs.indexOf(id) >= 0) i = k;
    });
    u.setSeries(i < 0 ? null : i + 1, { focus: i >= 0 });
  }

  // ---------- the comparison ----------

  function renderComparison() {
    clear(ui.comparison);
    var ids = view.comparing;
    ui.comparePanel.hidden = !ids;
    if (!ids) return;
    var rows = ids.filter(function (id) { return view.rowOf.has(id); })
      .map(function (id) { return view.rowOf.get(id); });
    var head = el("thead"), htr = el("tr");
    htr.appendChild(el("th", null, "key"));
    rows.forEach(function (r) {
      var th = el("th", { "data-run-id": String(P.runs.ids[r]) }, "run " + P.runs.ids[r]);
      var colour = view.colourOf[P.runs.ids[r]];
      if (colour) th.style.borderTop = "3px solid " + colour;
      htr.appendChild(th);
    });
    head.appendChild(htr);
    ui.comparison.appendChild(head);
    var body = el("tbody");
    function add(name, section) {
      var tr = el("tr", { "data-key": name });
      if (section) tr.className = section;
      tr.appendChild(el("th", { title: name }, label(name)));
      rows.forEach(function (r) {
        var v = value(name, r), td = el("td", null, fmt(v));
        if (typeof v === "number") td.className = "num";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    var differing = columnNames().filter(function (n) {
      if (n.indexOf("config.") !== 0) return false;
      var first = value(n, rows[0]);
      return rows.some(function (r) { return !same(value(n, r), first); });
    });
    var cfg = el("tr", { "class": "section" });
    cfg.appendChild(el("th", { colspan: rows.length + 1 },
      differing.length ? "config that differs" : "the config is the same for these runs"));
    body.appendChild(cfg);
    differing.forEach(function (n) { add(n, "config"); });
    var sum = el("tr", { "class": "section" });
    sum.appendChild(el("th", { colspan: rows.length + 1 }, "status and summaries"));
    body.appendChild(sum);
    add("info.status", "summary");
    metricNames().forEach(function (m) {
      ["last", "min", "max"].forEach(function (f) {
        if (P.runs.columns[m + "." + f]) add(m + "." + f, "summary");
      });
    });
    if (P.runs.columns["info.duration_s"]) add("info.duration_s", "summary");
    ui.comparison.appendChild(body);
  }

  // ---------- controls ----------

  function fillSelect(select, options, chosen) {
    clear(select);
    var all = document.createDocumentFragment();
    options.forEach(function (o) {
      var opt = el("option", { value: o }, label(o));
      if (chosen.indexOf(o) >= 0) opt.selected = true;
      all.appendChild(opt);
    });
    select.appendChild(all);
  }

  function configChoices() {
    return columnNames().filter(function (n) {
      return n.indexOf("config.") === 0 && (view.showConstant || !isConstant(n));
    });
  }

  function defaultGrouping() {
    var b = view.metric && P.bands[view.metric];
    if (b) return b.group_by.slice();
    return configChoices().filter(function (n) { return !SEED.test(n); });
  }

  function renderControls() {
    var metrics = metricNames();
    if (view.metric === null || metrics.indexOf(view.metric) < 0) {
      var loss = metrics.filter(function (m) { return /loss/.test(m); })[0];
      view.metric = loss || metrics[0] || null;
    }
    fillSelect(ui.metric, metrics, [view.metric]);
    var choices = configChoices();
    if (view.groupBy === null) view.groupBy = defaultGrouping();
    view.groupBy = view.groupBy.filter(function (c) { return P.runs.columns[c]; });
    fillSelect(ui.groupBy, choices, view.groupBy);
    ui.groupBy.size = Math.min(6, Math.max(2, choices.length));
  }

  function render() {
    view.columns = tableColumns();
    applyQuery();
    renderHead();
    syncSelection();
    renderComparison();
  }

  function bind() {
    var timer = null;
    ui.query.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { view.query = ui.query.value; render(); }, 200);
    });
    ui.query.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { clearTimeout(timer); view.query = ui.query.value; render(); }
    });
    ui.thead.addEventListener("click", function (ev) {
      var th = ev.target.closest("th[data-col]");
      if (!th) return;
      var col = th.getAttribute("data-col");
      if (view.sortCol === col) view.sortDir = -view.sortDir;
      else { view.sortCol = col; view.sortDir = 1; }
      applyQuery(); renderHead(); renderRows();
    });
    ui.tbody.addEventListener("click", function (ev) {
      var tr = ev.target.closest("tr[data-run-id]");
      if (tr) toggleRun(Number(tr.getAttribute("data-run-id")), false);
    });
    ui.tbody.addEventListener("mouseover", function (ev) {
      var tr = ev.target.closest("tr[data-run-id]");
      if (tr) focusRun(Number(tr.getAttribute("data-run-id")));
    });
    ui.tbody.addEventListener("mouseleave", function () { focusRun(-1); });
    ui.tableWrap.addEventListener("scroll", function () {
      if (!view.scrolling) {
        view.scrolling = true;
        requestAnimationFrame(function () {
          view.scrolling = false;
          view.scrollTop = ui.tableWrap.scrollTop;
          renderRows();
        });
      }
    });
    ui.metric.addEventListener("change", function () { view.metric = ui.metric.value; renderChart(); renderRows(); });
    ui.groupBy.addEventListener("change", function () {
      view.groupBy = Array.from(ui.groupBy.selectedOptions).map(function (o) { return o.value; });
      renderChart(); renderRows();
    });
    ui.ungroup.addEventListener("click", function () {
      view.groupBy = [];
      Array.from(ui.groupBy.options).forEach(function (o) { o.selected = false; });
      renderChart(); renderRows();
    });
    [["band", "band"], ["xAxis", "xAxis"]].forEach(function (pair) {
      ui[pair[0]].addEventListener("change", function () { view[pair[1]] = ui[pair[0]].value; renderChart(); });
    });
    ui.smoothing.addEventListener("input", function () {
      view.smoothing = Number(ui.smoothing.value);
      ui.smoothingValue.textContent = view.smoothing.toFixed(2);
      renderChart();
    });
    ui.logX.addEventListener("change", function () { view.logX = ui.logX.checked; renderChart(); });
    ui.logY.addEventListener("change", function () { view.logY = ui.logY.checked; renderChart(); });
    ui.showConstant.addEventListener("change", function () {
      view.showConstant = ui.showConstant.checked; renderControls(); render();
    });
    ui.showDetails.addEventListener("change", function () {
      view.showDetails = ui.showDetails.checked; render();
    });
    ui.compare.addEventListener("click", function () {
      var order = view.order.map(function (r) { return P.runs.ids[r]; });
      view.comparing = order.filter(function (id) { return view.selected.has(id); });
      Array.from(view.selected).forEach(function (id) {
        if (view.comparing.indexOf(id) < 0) view.comparing.push(id);
      });
      renderComparison();
      ui.comparePanel.scrollIntoView({ block: "start" });
    });
    ui.clearSel.addEventListener("click", function () { view.selected.clear(); syncSelection(); });
    ui.closeCompare.addEventListener("click", function () { view.comparing = null; renderComparison(); });
    var resize = null;
    window.addEventListener("resize", function () {
      clearTimeout(resize);
      resize = setTimeout(function () { view.width = ui.chart.clientWidth; renderChart(); }, 150);
    });
    if (typeof ResizeObserver === "function") {   // the width changed another way (a scrollbar)
      new ResizeObserver(function () {
        var w = ui.chart.clientWidth;
        if (w === view.width) return;
        view.width = w;
        if (view.chart) view.chart.setSize({ width: Math.max(320, w || 800), height: CHART_HEIGHT });
      }).observe(ui.chart);
    }
  }

  function find() {
    var ids = ["query", "query-error", "run-count", "run-table", "metric", "group-by", "band",
      "x-axis", "smoothing", "smoothing-value", "log-x", "log-y", "chart", "chart-note",
      "show-constant", "show-details", "compare", "clear-selection", "comparison",
      "comparison-panel", "close-comparison", "table-wrap", "title", "source", "ungroup"];
    ids.forEach(function (id) {
      ui[id.replace(/-([a-z])/g, function (_, ch) { return ch.toUpperCase(); })] =
        document.getElementById(id);
    });
    ui.thead = ui.runTable.tHead;
    ui.tbody = ui.runTable.tBodies[0];
    ui.clearSel = ui.clearSelection;
    ui.comparePanel = ui.comparisonPanel;
    ui.closeCompare = ui.closeComparison;
  }

  /* Show ``payload``, keeping the user's query, grouping, selection and view. */
  function load(payload) {
    if (!payload || payload.format !== 1) throw new Error("mlxpy explorer: unknown payload format");
    expandConstants(payload);
    P = payload;
    view.decoded = {};
    view.groupCodes = {};
    view.rendered = new Map();
    view.rowOf = new Map();
    P.runs.ids.forEach(function (id, r) { view.rowOf.set(id, r); });
    var known = view.rowOf;
    Array.from(view.selected).forEach(function (id) { if (!known.has(id)) view.selected.delete(id); });
    if (view.comparing) view.comparing = view.comparing.filter(function (id) { return known.has(id); });
    document.title = (P.title || "mlxpy report") + " · mlxpy";
    ui.title.textContent = P.title || "mlxpy report";
    ui.source.textContent = P.source + " · " + P.runs.ids.length + " runs · " +
      (P.generation ? "live, updated " : "written ") + P.generated + " · mlxpy " + P.mlxpy;
    document.body.setAttribute("data-generation", String(P.generation));
    renderControls();
    render();
  }

  function start() {
    find();
    var hasQuery = !!(window.mlxpy && window.mlxpy.query && window.mlxpy.query.compile);
    if (!hasQuery) {
      ui.query.disabled = true;
      ui.query.placeholder = "the query language is not available in this page";
    }
    bind();
    view.width = ui.chart.clientWidth;     // measured before the page fills up
    var maxHeight = getComputedStyle(ui.tableWrap).maxHeight;
    if (/^[0-9.]+px$/.test(maxHeight)) view.viewHeight = parseFloat(maxHeight);
    var data = document.getElementById("mlxpy-data");
    if (data) {
      load(JSON.parse(data.textContent));
    } else {
      live();
      return;
    }
    ready();
  }

  function ready() {
    state.ready = true;
    document.body.setAttribute("data-ready", "1");
  }

  /* The live page (mlxpy ui): the payload from the server, polled; load() on each change. */
  function live() {
    var url = document.body.getAttribute("data-payload-url") || "api/payload";
    var every = Number(document.body.getAttribute("data-interval") || "2") * 1000;
    var generation = null;
    function poll() {
      var since = generation === null ? "" : (location.search ? "&" : "?") + "since=" + generation;
      fetch(url + location.search + since, { cache: "no-store", credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (payload) {
          if (payload.unchanged) { /* nothing new: the page stays as it is */ }
          else if (payload.generation !== generation) {
            generation = payload.generation; load(payload);
          }
          if (!state.ready) ready();
          ui.source.classList.remove("offline");
        })
        .catch(function (err) {
          ui.source.classList.add("offline");
          ui.queryError.textContent = "cannot reach the server: " + err.message;
        })
        .then(function () { setTimeout(poll, every); });
    }
    poll();
  }

  window.mlxpy = window.mlxpy || {};
  window.mlxpy.explorer = {
    load: load, state: state,
    chart: function () { return view.chart; },   // the uPlot instance (tests, the console)
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
