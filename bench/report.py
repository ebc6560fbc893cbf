"""The explorer at scale: ``mlxpy report`` and ``mlxpy ui`` on 10,000 runs x 200 steps, in
headless Chromium; and, if it can be started here, the MLflow UI on 1,000 runs of the same
sweep (MLflow in a venv of its own: ``--mlflow-python PATH``, or ``--install-mlflow`` to make
one under ``~/.cache/mlxpy-bench``).

Measured (issue #18's goals in brackets):
- ``mlxpy report``: file size [<= 5 MB] and the command's wall time [<= 3 s];
- the report in Chromium: time until ``body[data-ready="1"]`` [<= 2 s];
- filter + regroup in the page, by ``performance.now()`` around the handlers [<= 200 ms];
- ``mlxpy ui``: start (first payload built), first paint in Chromium [<= 2 s], a refresh after
  100 runs changed: the server's rebuild (the poll that sees it) plus the page's re-render
  [<= 300 ms];
- MLflow UI (1,000 runs): server start, the runs-search call its page makes, and the time
  until its page shows a run, or why it could not be started.

Runs are written directly, as bench/reader.py writes them (its GEN_MLXPY recipe).

Usage: python bench/report.py [--runs 10000] [--steps 200] [--mlflow-runs 1000]
       [--mlflow-python PATH | --install-mlflow | --no-mlflow] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

# bench/ holds a logging.py that would shadow the standard library's (selenium, pandas use it):
# bench/ goes last on the path, after the standard library
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

from reader import GEN_MLXPY, SETTLE_S, generate  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
QUERY = "config.lr == 0.01 and config.seed < 3"
GROUP_BY = ["config.optimizer"]
MLFLOW_VERSION = "3.18.0"


def mlxpy(*args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", *args], capture_output=True, text=True, **kwargs
    )


def chrome(tmp: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp / f'chrome-{time.monotonic_ns()}'}")
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def until_ready(driver: Any, url: str, timeout: float = 120) -> float:
    """Seconds from navigating to ``url`` until the page says it is interactive."""
    t0 = time.perf_counter()
    driver.get(url)
    while driver.execute_script("return document.body.dataset.ready") != "1":
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"{url}: not ready after {timeout} s")
        time.sleep(0.01)
    return time.perf_counter() - t0


FILTER_AND_REGROUP = """
var done = arguments[arguments.length - 1], query = arguments[0], groupBy = arguments[1];
var E = window.mlxpy.explorer, q = document.getElementById("query");
var t0 = performance.now();
q.value = query;
q.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true}));
var t1 = performance.now();
var select = document.getElementById("group-by");
Array.from(select.options).forEach(function (o) { o.selected = groupBy.indexOf(o.value) >= 0; });
select.dispatchEvent(new Event("change", {bubbles: true}));
var t2 = performance.now();
requestAnimationFrame(function () {
  done({filter: t1 - t0, regroup: t2 - t1, painted: performance.now() - t0,
        visible: E.state.visibleIds.length, series: E.state.seriesCount});
});
"""

RELOAD = """
var done = arguments[arguments.length - 1];
fetch("api/payload" + location.search, {cache: "no-store"}).then(function (r) { return r.json(); })
  .then(function (payload) {
    var t0 = performance.now();
    window.mlxpy.explorer.load(payload);
    var t1 = performance.now();
    requestAnimationFrame(function () {
      done({load: t1 - t0, painted: performance.now() - t0, runs: payload.runs.ids.length,
            generation: payload.generation});
    });
  });
"""


def bench_report(parent: Path, tmp: Path, n: int) -> None:
    out = tmp / "report.html"
    t0 = time.perf_counter()
    result = mlxpy("report", str(parent), "-o", str(out))
    wrote = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    size = out.stat().st_size
    print(f"mlxpy report: {size / 1e6:.2f} MB [goal <= 5], written in {wrote:.2f} s [<= 3]")
    listed = mlxpy("runs", str(parent), "-q", QUERY, "-c", "info.status", "--format", "csv")
    expected = len(listed.stdout.splitlines()) - 1
    driver = chrome(tmp)
    try:
        ready = until_ready(driver, out.as_uri())
        timing = driver.execute_async_script(FILTER_AND_REGROUP, QUERY, GROUP_BY)
    finally:
        driver.quit()
    assert timing["visible"] == expected, (timing, expected)
    print(f"report in Chromium: interactive in {ready:.2f} s [<= 2]")
    print(
        f"filter ({expected} of {n} runs) {timing['filter']:.0f} ms, regroup "
        f"({timing['series']} series) {timing['regroup']:.0f} ms, painted after "
        f"{timing['painted']:.0f} ms [<= 200]"
    )


def bench_ui(parent: Path, tmp: Path, n: int, steps: int) -> None:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        # the page polls rarely: the request timed below is the one that sees the change
        [sys.executable, "-m", "mlxpy.cli", "ui", str(parent), "--interval", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True
    ).start()
    url = ""
    while not url:
        found = re.search(r"http://\S+", lines.get(timeout=300))
        url = found.group() if found else ""
    started = time.perf_counter() - t0
    driver = chrome(tmp)
    try:
        first = until_ready(driver, url)
        print(f"mlxpy ui: serving after {started:.2f} s (first payload built)")
        print(f"mlxpy ui: first paint (page interactive) {first:.2f} s [<= 2]")
        generate(sys.executable, GEN_MLXPY, parent, 100, steps, start=n)  # 100 runs changed
        time.sleep(2.5)  # the parent's mtime older than a clock tick, as for a user
        token = url.split("token=")[1]
        api = url.split("/?")[0] + f"/api/payload?token={token}"
        t1 = time.perf_counter()
        with urllib.request.urlopen(api, timeout=300) as response:
            body = response.read()
        rebuild = time.perf_counter() - t1
        page = driver.execute_async_script(RELOAD)
        assert page["runs"] == n + 100, page
        print(
            f"mlxpy ui: refresh after 100 runs changed: server {rebuild * 1000:.0f} ms "
            f"({len(body) / 1e6:.1f} MB), page re-render {page['load']:.0f} ms (painted "
            f"{page['painted']:.0f} ms); total {rebuild * 1000 + page['painted']:.0f} ms [<= 300]"
        )
    finally:
        driver.quit()
        proc.send_signal(2)
        proc.wait(timeout=30)


GEN_MLFLOW = """
import sys
import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

uri, n, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = MlflowClient(tracking_uri=uri)
exp = client.create_experiment("sweep")
for i in range(n):
    cfg = {"seed": i % 5, "lr": [1e-3, 1e-2, 1e-1][i % 3], "optimizer": ["adam", "sgd"][i % 2],
           "model.name": "mlp", "model.width": 64 + i % 4, "model.depth": 3,
           "data.name": "toy", "data.batch": 32, "epochs": rows, "tag": f"r{i}"}
    run = client.create_run(exp, run_name=f"r{i}")
    metrics = []
    for step in range(rows):
        metrics.append(Metric("loss", 1.0 / (step + 1) + cfg["seed"], 0, step))
        metrics.append(Metric("acc", step / rows, 0, step))
    params = [Param(k, str(v)) for k, v in cfg.items()]
    for k in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[k:k + 1000],
                         params=params if k == 0 else [])
    client.set_terminated(run.info.run_id)
print(exp)
"""


def mlflow_python(args: argparse.Namespace) -> str | None:
    if args.mlflow_python:
        return args.mlflow_python
    venv = Path.home() / ".cache" / "mlxpy-bench" / f"mlflow-{MLFLOW_VERSION}"
    python = venv / "bin" / "python"
    if not python.exists() and args.install_mlflow:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}"], check=True
        )
    return str(python) if python.exists() else None


def bench_mlflow(args: argparse.Namespace, tmp: Path) -> None:
    python = mlflow_python(args)
    if python is None:
        print(
            "MLflow UI: not measured: MLflow is not installed here (--install-mlflow makes a "
            f"venv with mlflow=={MLFLOW_VERSION} from PyPI, --mlflow-python uses one)"
        )
        return
    store = tmp / "mlruns"
    uri = store.as_uri()
    n = args.mlflow_runs
    t0 = time.perf_counter()
    made = subprocess.run(
        [python, "-c", textwrap.dedent(GEN_MLFLOW), uri, str(n), str(args.steps)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        print(f"MLflow UI: could not write its file store: {made.stderr.strip()[-500:]}")
        return
    experiment = made.stdout.strip().splitlines()[-1]
    wrote = time.perf_counter() - t0
    print(f"MLflow file store: {n} runs x {args.steps} steps written in {wrote:.0f} s")
    port = 5000 + os.getpid() % 1000
    mlflow_bin = str(Path(python).parent / "mlflow")
    t0 = time.perf_counter()
    server = subprocess.Popen(
        [mlflow_bin, "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - t0 > 120:
                    err = (server.stderr.read() if server.stderr else "")[-500:]
                    print(f"MLflow UI: the server did not start: {err}")
                    return
                time.sleep(0.2)
        started = time.perf_counter() - t0
        search = json.dumps({"experiment_ids": [experiment], "max_results": n}).encode()
        t1 = time.perf_counter()
        request = urllib.request.Request(
            base + "/api/2.0/mlflow/runs/search",
            data=search,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            found = len(json.loads(response.read()).get("runs", []))
        searched = time.perf_counter() - t1
        print(
            f"MLflow UI ({n} runs): server up in {started:.1f} s; runs search ({found} runs) "
            f"{searched * 1000:.0f} ms"
        )
        driver = chrome(tmp)
        try:
            t2 = time.perf_counter()
            driver.get(f"{base}/#/experiments/{experiment}")
            shown = None
            while time.perf_counter() - t2 < 120:
                if driver.execute_script("return document.body.innerText.indexOf('r0') >= 0"):
                    shown = time.perf_counter() - t2
                    break
                time.sleep(0.05)
            print(
                "MLflow UI: page shows a run after "
                + (f"{shown:.2f} s" if shown is not None else "more than 120 s (not seen)")
            )
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--mlflow-runs", type=int, default=1000)
    parser.add_argument("--mlflow-python")
    parser.add_argument("--install-mlflow", action="store_true")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--keep", help="write the stores here and keep them")
    args = parser.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mlxpy-report-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        parent = tmp / f"mlxpy-{args.runs}"
        made = generate(sys.executable, GEN_MLXPY, parent, args.runs, args.steps)
        print(f"== {args.runs} runs x {args.steps} steps (written in {made:.1f} s)")
        time.sleep(SETTLE_S + 1)  # the runs settle, as a finished sweep's have
        t0 = time.perf_counter()
        assert mlxpy("runs", str(parent), "-q", "log_id < 0").returncode == 0
        print(f"index built (mlxpy runs, cold) in {time.perf_counter() - t0:.1f} s")
        bench_report(parent, tmp, args.runs)
        bench_ui(parent, tmp, args.runs, args.steps)
        if not args.no_mlflow:
            bench_mlflow(args, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
