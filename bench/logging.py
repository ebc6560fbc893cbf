"""Throughput of ``log_metrics``: 100,000 calls of
``log_metrics({"loss": .., "acc": .., "lr": ..}, "train", step=i)``, each contender in a fresh
interpreter, side by side in one run:

- mlxpy's DefaultLogger, inside a real ``@mlxpy.launch`` task;
- MLXP 1.0.5's ``DefaultLogger.log_metrics`` (in its own venv: ``--mlxp-python``, or one made
  on first use under ``~/.cache/mlxpy-bench``);
- two floors: a loop appending the same JSON lines to an open buffered file with ``json``, and
  the same with ``orjson``. Each of their records carries the wall-clock time as mlxpy's do
  (``"_time": time.time()``, last), so they write the same bytes and do the same clock work.

Each contender runs ``--repeat`` times, interleaved; the best run of each is reported (the
machine's other load only ever slows a run down).

Usage: python bench/logging.py [--records N] [--repeat K] [--mlxp-python PATH] [--no-mlxp]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _peers import mlxp_python

LOOP = """
import time
t0 = time.perf_counter()
for i in range(N):
    LOG({"loss": 1.0 / (i + 1), "acc": i / N, "lr": 1e-3}, i)
FINISH()
elapsed = time.perf_counter() - t0
"""

CONTENDERS = {
    "mlxpy": """
        import json, os, sys, time
        import mlxpy

        @mlxpy.launch(config_path="./configs")
        def task(ctx):
            N = {n}
            LOG = lambda m, i: ctx.logger.log_metrics(m, "train", step=i)
            FINISH = ctx.logger.flush
            {loop}
            path = os.path.join(ctx.info.log_dir, "metrics", "train.json")
            print(json.dumps({{"seconds": elapsed, "bytes": os.path.getsize(path)}}))

        sys.argv = sys.argv[:1]
        task()
    """,
    "mlxp": """
        import json, os, sys, time, tempfile
        from mlxp.logger import DefaultLogger
        logger = DefaultLogger(tempfile.mkdtemp(), -1)
        N = {n}
        def LOG(m, i):
            m["step"] = i
            logger.log_metrics(m, "train")
        FINISH = lambda: None
        {loop}
        path = os.path.join(logger.log_dir, "metrics", "train.json")
        print(json.dumps({{"seconds": elapsed, "bytes": os.path.getsize(path)}}))
    """,
    "json floor": """
        import json, os, tempfile, time
        path = os.path.join(tempfile.mkdtemp(), "train.json")
        fh = open(path, "a")
        N = {n}
        def LOG(m, i):
            fh.write(json.dumps({{"step": i, **m, "_time": time.time()}}) + "\\n")
        FINISH = fh.flush
        {loop}
        print(json.dumps({{"seconds": elapsed, "bytes": os.path.getsize(path)}}))
    """,
    "orjson floor": """
        import json, os, tempfile, time, orjson
        path = os.path.join(tempfile.mkdtemp(), "train.json")
        fh = open(path, "ab")
        N = {n}
        def LOG(m, i):
            record = {{"step": i, **m, "_time": time.time()}}
            fh.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        FINISH = fh.flush
        {loop}
        print(json.dumps({{"seconds": elapsed, "bytes": os.path.getsize(path)}}))
    """,
}


def run(name: str, python: str, records: int, workdir: Path) -> dict:
    indent = " " * 4 if name == "mlxpy" else ""
    loop = textwrap.indent(LOOP, indent).strip()
    source = textwrap.dedent(CONTENDERS[name]).format(n=records, loop=loop)
    script = workdir / ("bench_" + name.replace(" ", "_") + ".py")
    script.write_text(source)
    out = subprocess.run([python, str(script)], cwd=workdir, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mlxp-python")
    parser.add_argument("--no-mlxp", action="store_true")
    args = parser.parse_args()
    pythons = {
        "mlxpy": sys.executable,
        "json floor": sys.executable,
        "orjson floor": sys.executable,
    }
    if not args.no_mlxp:
        pythons["mlxp"] = mlxp_python(args.mlxp_python)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):  # interleaved, so drift hits every contender alike
            for name, python in pythons.items():
                r = run(name, python, args.records, Path(tmp))
                if name not in results or r["seconds"] < results[name]["seconds"]:
                    results[name] = r
    print(f"{'contender':14s} {'records/s':>12s} {'bytes':>10s}")
    for name, r in results.items():
        print(f"{name:14s} {args.records / r['seconds']:12,.0f} {r['bytes']:10,d}")
    if "mlxp" in results:
        ratio = results["mlxp"]["seconds"] / results["mlxpy"]["seconds"]
        print(f"mlxpy / MLXP speed: {ratio:.1f}x")
    ratio = results["json floor"]["seconds"] / results["mlxpy"]["seconds"]
    print(f"mlxpy / plain-json floor speed: {ratio:.2f}x")
    ratio = results["orjson floor"]["seconds"] / results["mlxpy"]["seconds"]
    print(f"mlxpy / orjson floor speed: {ratio:.2f}x (goal >= 0.8x)")


if __name__ == "__main__":
    main()
