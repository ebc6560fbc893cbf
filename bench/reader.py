"""Reading many runs back, each step in a fresh process, side by side in one run:

- mlxpy's Reader: cold index build, warm open with nothing changed, warm filter, filter + load
  + mean/std over seeds of 1% and 10% of the runs, open after 100 new runs, peak RSS;
- the floor: plain ``os.scandir`` + ``orjson`` + ``numpy`` over the same files, no mlxpy (the
  cold build reads every run record and metric log; loading reads the selected logs and
  aggregates with numpy);
- MLXP 1.0.5's Reader on the same runs written by MLXP's logger (1,000 runs only: its index
  rebuild is quadratic), in its own venv (``--mlxp-python``, or one made under
  ``~/.cache/mlxpy-bench``).

Runs are written directly (the metadata files as the logger writes them, the metric logs by
mlxpy's own MetricsWriter, so each has its summary); configs of ~10 keys, 200 metric rows
each (50 from 100,000 runs), half of them matching the query. After generating, the bench
waits the index's settle time (runs changed in the last few seconds are re-checked).

Usage: python bench/reader.py [--sizes 1000 10000 100000] [--mlxp-python PATH] [--no-mlxp]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _peers import mlxp_python

#: the index's settle time (mlxpy.reading.index.SETTLE_S)
SETTLE_S = 5.0

GEN_MLXPY = """
import os, sys
from pathlib import Path
import orjson
from mlxpy.rundir.atomic import dump_yaml
from mlxpy.rundir.metrics import MetricsWriter

parent, start, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
parent.mkdir(exist_ok=True)
for i in range(start, start + n):
    cfg = {"seed": i % 5, "lr": [1e-3, 1e-2, 1e-1][i % 3], "optimizer": ["adam", "sgd"][i % 2],
           "model": {"name": "mlp", "width": 64 + i % 4, "depth": 3},
           "data": {"name": "toy", "batch": 32}, "epochs": ROWS, "tag": f"r{i}"}
    root = parent / str(i + 1)
    info = {"status": "COMPLETE", "script_path": str(parent / "main.py"),
            "project_dir": str(parent), "log_id": i + 1, "log_dir": str(root), "format": 1,
            "uid": f"01a23371-508c-7019-98ca-{i:012x}", "heartbeat_interval_s": 10.0,
            "start_time": "2026-12-01T11:02:04.123+00:00",
            "end_time": "2026-12-01T11:03:04.123+00:00"}
    (root / "metadata").mkdir(parents=True)
    (root / "metrics" / ".keys").mkdir(parents=True)
    (root / "metadata" / "config.yaml").write_text(dump_yaml(cfg))
    (root / "metadata" / "info.yaml").write_text(dump_yaml(info))
    (root / "metadata" / "run.json").write_bytes(orjson.dumps({"config": cfg, "info": info}))
    log = root / "metrics" / "train.json"
    writer = MetricsWriter(log, root / "metrics" / ".keys" / "train.json", "train", 1000)
    for step in range(ROWS):
        writer.write({"loss": 1.0 / (step + 1) + cfg["seed"], "acc": step / ROWS}, step=step)
    writer.close()
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

MLXPY = """
import resource, time
import numpy, pandas
t = time.perf_counter()
import mlxpy
import mlxpy.reading.reader  # what mlxpy.Reader imports on first use
t0 = time.perf_counter()
RESULT = {"import": t0 - t}
QUERY = "config.optimizer == 'adam' & info.status == 'COMPLETE'"
if STEP == "cold":
    reader = mlxpy.Reader(PARENT, reload=True)
    RESULT["cold build"] = time.perf_counter() - t0
elif STEP == "warm":
    reader = mlxpy.Reader(PARENT)
    t1 = time.perf_counter()
    runs = reader.filter(QUERY)
    t2 = time.perf_counter()
    assert len(runs) == N // 2, len(runs)
    RESULT.update({"warm open": t1 - t0, "warm filter": t2 - t1, "open+filter": t2 - t0})
    for share in (100, 10):
        t3 = time.perf_counter()
        some = reader.filter(f"log_id <= {N // share}")
        agg = some.mlxpy.aggregate("train", by=["config.lr"], over="config.seed")
        RESULT[f"filter+load+agg {100 // share}%"] = time.perf_counter() - t3
        assert len(agg) == 3 * ROWS, len(agg)
else:
    reader = mlxpy.Reader(PARENT)
    RESULT["open after 100 new"] = time.perf_counter() - t0
    assert len(reader) == N + 100
RESULT["peak RSS MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

FLOOR = """
import os, resource, time
import numpy as np
import orjson
t0 = time.perf_counter()
summaries = {}
for entry in os.scandir(PARENT):
    if not entry.name.isdigit():
        continue
    with open(os.path.join(entry.path, "metadata", "run.json"), "rb") as fh:
        record = orjson.loads(fh.read())
    with open(os.path.join(entry.path, "metrics", "train.json"), "rb") as fh:
        rows = orjson.loads(b"[" + fh.read().rstrip(b"\\n").replace(b"\\n", b",") + b"]")
    last = rows[-1]
    row = {"config": record["config"], "status": record["info"]["status"]}
    for key in last:
        values = np.array([r[key] for r in rows], dtype=float)
        row[key] = (last[key], values.min(), values.max())
    summaries[int(entry.name)] = row
t1 = time.perf_counter()
RESULT = {"cold build": t1 - t0}
for share in (100, 10):
    t2 = time.perf_counter()
    ids = [i for i in summaries if i <= N // share]
    groups = {}
    for i in ids:
        root = os.path.join(PARENT, str(i))
        with open(os.path.join(root, "metrics", "train.json"), "rb") as fh:
            rows = orjson.loads(b"[" + fh.read().rstrip(b"\\n").replace(b"\\n", b",") + b"]")
        loss = np.array([r["loss"] for r in rows])
        acc = np.array([r["acc"] for r in rows])
        groups.setdefault(summaries[i]["config"]["lr"], []).append((loss, acc))
    out = {lr: [(np.mean(m, 0), np.std(m, 0, ddof=1)) for m in map(np.stack, zip(*runs))]
           for lr, runs in groups.items()}
    RESULT[f"filter+load+agg {100 // share}%"] = time.perf_counter() - t2
RESULT["peak RSS MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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


def run_script(python: str, body: str, parent: Path, n: int, step: str = "", rows: int = 0) -> dict:
    source = f"PARENT = {str(parent)!r}\nN = {n}\nROWS = {rows}\nSTEP = {step!r}\n"
    source += textwrap.dedent(body) + "\nimport json as _j\nprint(_j.dumps(RESULT))\n"
    out = subprocess.run([python, "-c", source], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def generate(python: str, body: str, parent: Path, n: int, rows: int, start: int = 0) -> float:
    source = f"ROWS = {rows}\n" + textwrap.dedent(body)
    t0 = time.perf_counter()
    if body is GEN_MLXPY:
        subprocess.run([python, "-c", source, str(parent), str(start), str(n)], check=True)
    else:
        parent.mkdir(parents=True)
        subprocess.run([python, "-c", source, str(parent), str(n)], check=True)
    return time.perf_counter() - t0


def fmt(result: dict) -> str:
    return ", ".join(
        f"{k} {v:.0f}" if k.endswith("MB") else f"{k} {v * 1000:.0f} ms" for k, v in result.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--mlxp-python")
    parser.add_argument("--no-mlxp", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlxpy-reader-bench-"))
    try:
        for n in args.sizes:
            rows = 50 if n >= 100_000 else 200
            ours = tmp / f"mlxpy-{n}"
            made = generate(sys.executable, GEN_MLXPY, ours, n, rows)
            time.sleep(SETTLE_S + 1)  # the runs settle: a warm open looks at none of them
            cold = run_script(sys.executable, MLXPY, ours, n, "cold", rows)
            warm = run_script(sys.executable, MLXPY, ours, n, "warm", rows)
            floor = run_script(sys.executable, FLOOR, ours, n, "", rows)
            generate(sys.executable, GEN_MLXPY, ours, 100, rows, start=n)
            time.sleep(2.5)  # the parent's mtime older than a clock tick, as a user's is
            new = run_script(sys.executable, MLXPY, ours, n, "new", rows)
            print(f"== {n} runs x {rows} rows (generated in {made:.1f} s)")
            print(f"mlxpy : {fmt(cold)}")
            print(f"mlxpy : {fmt(warm)}")
            print(f"mlxpy : {fmt(new)}")
            print(f"floor : {fmt(floor)}")
            print(
                f"cold / floor {cold['cold build'] / floor['cold build']:.2f}x; "
                + "; ".join(
                    f"{k} / floor {warm[k] / floor[k]:.2f}x"
                    for k in floor
                    if k.startswith("filter")
                )
            )
            if n <= 1000 and not args.no_mlxp:
                python = mlxp_python(args.mlxp_python)
                theirs = tmp / f"mlxp-{n}"
                generate(python, GEN_MLXP, theirs, n, rows)
                mlxp = run_script(python, MLXP_COLD, theirs, n, "", rows)
                print(f"MLXP cold  : {fmt(mlxp)}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
