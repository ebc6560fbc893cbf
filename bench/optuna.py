"""Bayesian search on workers that never wait for one another, against Hydra's Optuna
sweeper, which asks ``n_jobs`` trials, runs them as a batch and waits for the slowest.

The same task on both sides: it sleeps a random 0.1-1 s and returns ``(lr - 0.01) ** 2``.
mlxpy: ``OptunaSweeper``, 64 trials on 8 LocalScheduler workers; idle time = for each
worker, the gaps between the end of one trial's run and the start of its next (from the run
infos' start/end times). Hydra: ``hydra-optuna-sweeper`` with ``n_jobs=8`` batches through
the joblib launcher, in a venv of its own; idle time = for each batch, the time each of its 8
slots waits from its job's end until the next batch's jobs start (the task records its own
start and end). The goal: mlxpy's idle time <= 5 s.

Usage: python bench/optuna.py [--trials 64] [--workers 8]
         [--hydra-python /work/venv-hydra-optuna/bin/python]
(the Hydra side is made on first use: python -m venv DIR; DIR/bin/pip install
hydra-optuna-sweeper hydra-joblib-launcher)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
MLXPY_TASK = """
import random, time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    time.sleep(random.uniform(0.1, 1.0))
    lr = float(ctx.config.lr)
    ctx.logger.log_metrics({"loss": (lr - 0.01) ** 2}, log_name="val")

if __name__ == "__main__":
    task()
"""

HYDRA_TASK = """
import json, os, random, time
import hydra
from hydra.core.hydra_config import HydraConfig

TIMES = os.environ["BENCH_TIMES"]

@hydra.main(config_path="conf", config_name="config", version_base=None)
def task(cfg):
    start = time.time()
    time.sleep(random.uniform(0.1, 1.0))
    end = time.time()
    with open(TIMES, "a") as out:
        num = HydraConfig.get().job.num
        out.write(json.dumps({"num": num, "start": start, "end": end}) + "\\n")
    return (cfg.lr - 0.01) ** 2

if __name__ == "__main__":
    task()
"""

HYDRA_CONFIG = """
defaults:
  - override hydra/sweeper: optuna
  - override hydra/launcher: joblib
  - _self_
lr: 0.01
hydra:
  sweeper:
    direction: minimize
    n_trials: {trials}
    n_jobs: {workers}
    params:
      lr: tag(log, interval(1e-4, 1e-1))
  launcher:
    n_jobs: {workers}
  sweep:
    dir: {sweep_dir}
"""


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def bench_mlxpy(trials: int, workers: int) -> dict:
    from mlxpy.scheduling.base import JobPhase
    from mlxpy.scheduling.local import LocalScheduler

    root = Path(tempfile.mkdtemp(prefix="bench-optuna-"))
    (root / "main.py").write_text(textwrap.dedent(MLXPY_TASK))
    (root / "configs").mkdir()
    (root / "configs" / "config.yaml").write_text("lr: 0.01\n")
    options = {"use_scheduler": True, "scheduler": {"name": "LocalScheduler"}}
    options["scheduler"]["max_workers"] = workers
    (root / "configs" / "mlxpy.yaml").write_text(yaml.safe_dump(options))
    sweep = [
        "+mlxpy.sweep.name=OptunaSweeper",
        f"+mlxpy.sweep.trials={trials}",
        f"+mlxpy.sweep.workers={workers}",
        "+mlxpy.sweep.objective=val.loss.min",
    ]
    space = "lr=tag(log, interval(1e-4,1e-1))"
    started = time.time()
    result = subprocess.run(
        [sys.executable, "main.py", space, *sweep], cwd=root, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"the mlxpy launch failed:\n{result.stderr}")
    (jobs_file,) = (root / "logs" / ".sweeps").glob("*/workers/*/jobs.json")
    job_ids = json.loads(jobs_file.read_text())
    scheduler = LocalScheduler()
    deadline = time.monotonic() + 600
    while not all(s.phase == JobPhase.DONE for s in scheduler.statuses(job_ids).values()):
        if time.monotonic() > deadline:
            raise SystemExit("the mlxpy workers did not finish in 600 s")
        time.sleep(0.2)
    runs: dict[str, list[tuple[float, float]]] = {}
    count = 0
    for info_file in (root / "logs").glob("*/metadata/info.yaml"):
        info = yaml.safe_load(info_file.read_text())
        if info["status"] != "COMPLETE":
            continue
        count += 1
        span = (_time(info["start_time"]), _time(info["end_time"]))
        runs.setdefault(info["scheduler"]["job_id"], []).append(span)
    gaps = []
    for spans in runs.values():
        spans.sort()
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]
    first = min(s for spans in runs.values() for s, _ in spans)
    last = max(e for spans in runs.values() for _, e in spans)
    busy = sum(e - s for spans in runs.values() for s, e in spans)
    return {
        "runs": count,
        "workers_used": len(runs),
        "idle_between_trials_s": sum(gaps),
        "max_gap_s": max(gaps, default=0.0),
        "busy_s": busy,
        "first_to_last_s": last - first,
        "launch_to_last_s": last - started,
        "dir": str(root),
    }


def hydra_python(given: str | None) -> str:
    if given:
        return given
    venv = Path("/work/venv-hydra-optuna")
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "hydra-optuna-sweeper"], check=True
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "hydra-joblib-launcher"], check=True
        )
    return str(python)


def bench_hydra(python: str, trials: int, workers: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-hydra-optuna-"))
    (root / "app.py").write_text(textwrap.dedent(HYDRA_TASK))
    (root / "conf").mkdir()
    config = HYDRA_CONFIG.format(trials=trials, workers=workers, sweep_dir=root / "multirun")
    (root / "conf" / "config.yaml").write_text(config)
    times = root / "times.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BENCH_TIMES"] = str(times)
    started = time.time()
    result = subprocess.run(
        [python, "app.py", "--multirun"], cwd=root, capture_output=True, text=True, env=env
    )
    if result.returncode != 0:
        raise SystemExit(f"the Hydra Optuna sweep failed:\n{result.stderr[-3000:]}")
    jobs = [json.loads(line) for line in times.read_text().splitlines()]
    batches: dict[int, list[dict]] = {}
    for job in jobs:
        batches.setdefault(job["num"] // workers, []).append(job)
    order = sorted(batches)
    # the part of it spent waiting for the slowest trial of the batch; the rest is the
    # launcher starting the next batch
    slowest = sum(max(j["end"] for j in batches[b]) - j["end"] for b in order for j in batches[b])
    idle = 0.0
    for b, nxt in zip(order, order[1:], strict=False):
        # each slot waits from its job's end until the next batch's job starts
        idle += sum(j["start"] for j in batches[nxt]) - sum(j["end"] for j in batches[b])
    first = min(j["start"] for j in jobs)
    last = max(j["end"] for j in jobs)
    return {
        "runs": len(jobs),
        "batches": len(order),
        "waiting_for_slowest_s": slowest,
        "idle_between_trials_s": idle,
        "busy_s": sum(j["end"] - j["start"] for j in jobs),
        "first_to_last_s": last - first,
        "launch_to_last_s": last - started,
        "dir": str(root),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--hydra-python", default=None)
    parser.add_argument("--skip-hydra", action="store_true")
    args = parser.parse_args()
    print(
        f"{args.trials} trials, {args.workers} workers, a task sleeping 0.1-1 s (cores: "
        f"{os.cpu_count()})"
    )
    ours = bench_mlxpy(args.trials, args.workers)
    print(
        f"mlxpy OptunaSweeper, LocalScheduler workers: {ours['runs']} runs on "
        f"{ours['workers_used']} workers; idle between trials "
        f"{ours['idle_between_trials_s']:.2f} s in total (largest gap "
        f"{ours['max_gap_s']:.2f} s; goal <= 5 s); busy "
        f"{ours['busy_s']:.1f} s; first start to last end {ours['first_to_last_s']:.1f} s; "
        f"launch to last end {ours['launch_to_last_s']:.1f} s"
    )
    if args.skip_hydra:
        return
    theirs = bench_hydra(hydra_python(args.hydra_python), args.trials, args.workers)
    print(
        f"Hydra optuna sweeper, joblib launcher, n_jobs={args.workers}: {theirs['runs']} jobs "
        f"in {theirs['batches']} batches; idle between trials (batch wait) "
        f"{theirs['idle_between_trials_s']:.2f} s in total, of which "
        f"{theirs['waiting_for_slowest_s']:.2f} s waiting for each batch's slowest trial and "
        f"the rest starting the next batch; busy {theirs['busy_s']:.1f} s; "
        f"first start to last end {theirs['first_to_last_s']:.1f} s; launch to last end "
        f"{theirs['launch_to_last_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
