"""Reading many runs back, each step in a fresh process, side by side in one run:

- mlxpy's Reader on runs written by mlxpy's DefaultLogger: cold (index built from scratch,
  with import, filter, loading the matching runs' metrics and mean/std over seeds per step),
  warm re-open, warm filter, loading 1,000 runs' histories;
- MLXP 1.0.5's Reader on the same runs written by MLXP's logger (1,000 runs only: its index
  rebuild is quadratic), in its own venv (``--mlxp-python``, or one made under
  ``~/.cache/mlxpy-bench``);
- the floor: plain ``os.scandir`` + ``json`` over mlxpy's files, with the same pandas
  aggregation.

Runs: configs of ~10 keys, 200 metric rows each, half of them matching the query.

Usage: python bench/reader.py [--sizes 1000 10000] [--mlxp-python PATH] [--no-mlxp]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _peers import mlxp_python

ROWS = 200

GEN_MLXPY = """
import sys, time
from pathlib import Path
import mlxpy
from mlxpy.context import Context, RunInfo, as_config
from mlxpy import DefaultLogger

parent, n = Path(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    cfg = {"seed": i % 5, "lr": [1e-3, 1e-2, 1e-1][i % 3], "optimizer": ["adam", "sgd"][i % 2],
           "model": {"name": "mlp", "width": 64 + i % 4, "depth": 3},
           "data": {"name": "toy", "batch": 32}, "epochs": ROWS, "tag": f"r{i}"}
    logger = DefaultLogger(parent_log_dir=str(parent), flush_interval_s=3600)
    ctx = Context(config=as_config(cfg), mlxpy=as_config({}),
                  info=RunInfo(status="RUNNING", script_path=str(parent / "main.py"),
                               project_dir=str(parent)))
    logger.start_run(ctx)
    for step in range(ROWS):
        logger.log_metrics({"loss": 1.0 / (step + 1) + cfg["seed"], "acc": step / ROWS},
                           step=step)
    ctx.info.status = "COMPLETE"
    logger.save_info(dict(ctx.info))
    logger.end_run(ctx, "COMPLETE")
"""

GEN_MLXP = """
import sys
from omegaconf import OmegaConf
from mlxp.logger import DefaultLogger

parent, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    cfg = {"seed": i % 5, "lr": [1e-3, 1e-2, 1e-1][i % 3], "optimizer": ["adam", "sgd"][i % 2],
           "model": {"name": "mlp", "width": 64 + i % 4, "depth": 3},
           "data": {"name": "toy", "batch": 32}, "epochs": ROWS, "tag": f"r{i}"}
    logger = DefaultLogger(parent, -1)
    logger._log_configs(OmegaConf.create(cfg), "config")
    logger._log_configs(OmegaConf.create({"status": "COMPLETE", "logger": logger.get_info()}),
                        "info")
    logger._log_configs(OmegaConf.create({"logger": {"name": "DefaultLogger"}}), "mlxp")
    for step in range(ROWS):
        logger.log_metrics({"loss": 1.0 / (step + 1) + cfg["seed"], "acc": step / ROWS,
                            "step": step}, "train")
"""

MLXPY_COLD = """
import time
t0 = time.perf_counter()
import mlxpy
reader = mlxpy.Reader(PARENT, reload=True)
t1 = time.perf_counter()
runs = reader.filter("config.optimizer == 'adam' & info.status == 'COMPLETE'")
t2 = time.perf_counter()
agg = runs.mlxpy.aggregate("train", by=["config.lr"], over="config.seed")
t3 = time.perf_counter()
assert len(runs) == N // 2 and len(agg) == 3 * ROWS, (len(runs), len(agg))
RESULT = {"total": t3 - t0, "index": t1 - t0, "filter": t2 - t1, "load+aggregate": t3 - t2}
"""

MLXPY_WARM = """
import time
t0 = time.perf_counter()
import mlxpy
reader = mlxpy.Reader(PARENT)
t1 = time.perf_counter()
runs = reader.filter("config.optimizer == 'adam' & info.status == 'COMPLETE'")
t2 = time.perf_counter()
first = reader.filter("log_id <= 1000")
t3 = time.perf_counter()
long = first.mlxpy.metrics("train")
t4 = time.perf_counter()
assert len(long) == min(N, 1000) * ROWS
RESULT = {"open": t1 - t0, "filter": t2 - t1, "load 1000 histories": t4 - t3}
"""

FLOOR = """
import time
t0 = time.perf_counter()
import json, os
import pandas as pd
rows, owners, configs = [], [], {}
for entry in os.scandir(PARENT):
    if not entry.name.isdigit():
        continue
    with open(os.path.join(entry.path, "metadata", "run.json")) as fh:
        record = json.load(fh)
    cfg = record["config"]
    if cfg["optimizer"] != "adam" or record["info"]["status"] != "COMPLETE":
        continue
    configs[entry.name] = cfg
    with open(os.path.join(entry.path, "metrics", "train.json")) as fh:
        for line in fh:
            rows.append(json.loads(line))
            owners.append(entry.name)
frame = pd.DataFrame(rows)
frame["config.lr"] = [configs[o]["lr"] for o in owners]
agg = frame.groupby(["config.lr", "step"])[["loss", "acc"]].agg(["mean", "std", "count"])
t1 = time.perf_counter()
assert len(agg) == 3 * ROWS
RESULT = {"total": t1 - t0}
"""

MLXP_COLD = """
import time
t0 = time.perf_counter()
import contextlib, io
import numpy as np
import pandas as pd
import mlxp
with contextlib.redirect_stdout(io.StringIO()):
    reader = mlxp.Reader(PARENT, refresh=True)
t1 = time.perf_counter()
res = reader.filter("config.optimizer == 'adam' & info.status == 'COMPLETE'")
t2 = time.perf_counter()
frame = res.toPandas(lazy=False)
out = {}
for lr, group in frame.groupby("config.lr"):
    losses = np.stack([np.asarray(v, dtype=float) for v in group["train.loss"]])
    out[lr] = (losses.mean(axis=0), losses.std(axis=0))
t3 = time.perf_counter()
assert len(res) == N // 2 and len(out) == 3
RESULT = {"total": t3 - t0, "index": t1 - t0, "filter": t2 - t1, "load+aggregate": t3 - t2}
"""


def run_script(python: str, body: str, parent: Path, n: int) -> dict:
    source = f"PARENT = {str(parent)!r}\nN = {n}\nROWS = {ROWS}\n" + textwrap.dedent(body)
    source += "\nimport json as _j\nprint(_j.dumps(RESULT))\n"
    out = subprocess.run([python, "-c", source], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def generate(python: str, body: str, parent: Path, n: int) -> None:
    parent.mkdir(parents=True)
    source = f"ROWS = {ROWS}\n" + textwrap.dedent(body)
    subprocess.run([python, "-c", source, str(parent), str(n)], check=True)


def fmt(result: dict) -> str:
    return ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--mlxp-python")
    parser.add_argument("--no-mlxp", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlxpy-reader-bench-"))
    try:
        for n in args.sizes:
            ours = tmp / f"mlxpy-{n}"
            generate(sys.executable, GEN_MLXPY, ours, n)
            cold = run_script(sys.executable, MLXPY_COLD, ours, n)
            warm = run_script(sys.executable, MLXPY_WARM, ours, n)
            floor = run_script(sys.executable, FLOOR, ours, n)
            print(f"== {n} runs x {ROWS} rows")
            print(f"mlxpy cold : {fmt(cold)}")
            print(f"mlxpy warm : {fmt(warm)}")
            print(f"json floor : {fmt(floor)}")
            print(f"mlxpy cold total / floor: {cold['total'] / floor['total']:.2f}x")
            if n <= 1000 and not args.no_mlxp:
                python = mlxp_python(args.mlxp_python)
                theirs = tmp / f"mlxp-{n}"
                generate(python, GEN_MLXP, theirs, n)
                mlxp = run_script(python, MLXP_COLD, theirs, n)
                print(f"MLXP cold  : {fmt(mlxp)}")
                print(f"MLXP / mlxpy cold total: {mlxp['total'] / cold['total']:.1f}x")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
