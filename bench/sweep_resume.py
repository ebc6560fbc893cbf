"""Resuming a sweep: does it rerun exactly what did not complete, and how long does planning
a large resume take?

1. A sweep of 200 points under LocalScheduler, 37 of which kill themselves with SIGKILL in
   their first attempt (LOST). ``mlxpy sweep resume`` must rerun exactly those 37, each in
   its own run dir (0 new dirs, 0 duplicated runs), and touch none of the 163 that completed
   (every file's mtime and the run's uid compared).
2. Planning the resume of a 5,000-point sweep (a synthetic manifest, journal and run dirs:
   complete, failed, lost and missing points): goal <= 1 s.

Usage: python bench/sweep_resume.py [--points 200] [--killed 37] [--plan-points 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAIN = """
import os, signal
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    c = ctx.config
    if ctx.logger.load_checkpoint() is None:  # the first attempt
        ctx.logger.log_checkpoint({"started": True})
        if (c.x * 37) % c.points < c.killed:  # exactly `killed` points (37 is prime to 200)
            os.kill(os.getpid(), signal.SIGKILL)
    ctx.logger.log_metrics({"x": c.x}, step=0)

if __name__ == "__main__":
    task()
"""


def fingerprint(run_dir: Path) -> tuple:
    files = sorted(p for p in run_dir.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)


def wait_done(parent: Path, sweep_id: str, timeout: float) -> list:
    from mlxpy.sweeping.manifest import SweepManifest
    from mlxpy.sweeping.resume import point_states

    deadline = time.monotonic() + timeout
    while True:
        states = point_states(parent, SweepManifest.read(parent, sweep_id))
        if all(s.status not in ("SUBMITTED", "RUNNING") for s in states):
            return states
        if time.monotonic() > deadline:
            raise SystemExit(f"the sweep did not end in {timeout} s")
        time.sleep(1)


def rerun_exactly(points: int, killed: int) -> None:
    from collections import Counter

    from mlxpy.rundir.info import read_info
    from mlxpy.sweeping.manifest import list_sweeps

    root = Path(tempfile.mkdtemp(prefix="mlxpy-sweep-resume-"))
    try:
        (root / "configs").mkdir()
        (root / "configs" / "config.yaml").write_text(f"x: 0\npoints: {points}\nkilled: {killed}\n")
        (root / "configs" / "mlxpy.yaml").write_text(
            "use_scheduler: true\nscheduler:\n  name: LocalScheduler\n  max_workers: 2\n"
        )
        logs = root / "logs"
        command = [
            sys.executable,
            "main.py",
            f"x=range(0,{points})",
            "+mlxpy.logger.heartbeat_interval_s=0.2",
        ]
        (root / "main.py").write_text(MAIN)
        start = time.perf_counter()
        subprocess.run(command, cwd=root, check=True, capture_output=True)
        (sweep_id,) = list_sweeps(logs)
        states = wait_done(logs, sweep_id, timeout=points * 5)
        first = time.perf_counter() - start
        time.sleep(1)  # the killed runs' heartbeats go stale: LOST
        states = wait_done(logs, sweep_id, timeout=60)
        before = Counter(s.status for s in states)
        dirs_before = sorted(p.name for p in logs.iterdir() if p.name.isdigit())
        complete = {
            s.log_id: fingerprint(logs / str(s.log_id)) for s in states if s.status == "COMPLETE"
        }
        uids = {log_id: read_info(logs / str(log_id))["uid"] for log_id in complete}

        start = time.perf_counter()
        resume = subprocess.run(
            [sys.executable, "-m", "mlxpy.cli", "sweep", "resume", sweep_id],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        returned = time.perf_counter() - start
        states = wait_done(logs, sweep_id, timeout=killed * 5 + 60)
        resumed = time.perf_counter() - start
        after = Counter(s.status for s in states)
        dirs_after = sorted(p.name for p in logs.iterdir() if p.name.isdigit())
        infos = {s.log_id: read_info(logs / str(s.log_id)) for s in states}
        rerun = sum(1 for info in infos.values() if info.get("restarts"))
        per_point = Counter(info["sweep_point"] for info in infos.values())
        touched = sum(
            1
            for log_id, print_ in complete.items()
            if fingerprint(logs / str(log_id)) != print_ or infos[log_id]["uid"] != uids[log_id]
        )
        print(f"sweep of {points} points under LocalScheduler (max_workers=2), {killed} SIGKILLed")
        print(f"  first launch: {dict(before)} after {first:.1f} s")
        print(f"  resume: {resume.stderr.strip().splitlines()[0]}")
        print(f"  `mlxpy sweep resume` returned in {returned:.2f} s; all ended {resumed:.1f} s")
        print(f"  after resume: {dict(after)}")
        print(f"  points rerun: {rerun} (goal: {killed})")
        print(
            f"  run dirs: {len(dirs_before)} before, {len(dirs_after)} after (new: "
            f"{len(set(dirs_after) - set(dirs_before))})"
        )
        print(
            f"  duplicated runs (a point with >1 run dir): "
            f"{sum(1 for n in per_point.values() if n > 1)}"
        )
        print(f"  finished runs touched: {touched} of {len(complete)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def plan_time(points: int) -> None:
    from mlxpy.rundir import codec
    from mlxpy.rundir.atomic import atomic_write_yaml
    from mlxpy.rundir.claim import new_uid
    from mlxpy.rundir.layout import RunDir
    from mlxpy.sweeping.manifest import (
        JOURNAL_FILE,
        SweepManifest,
        SweepPoint,
        new_sweep_id,
        sweep_dir,
    )
    from mlxpy.sweeping.resume import plan_resume

    root = Path(tempfile.mkdtemp(prefix="mlxpy-sweep-plan-"))
    try:
        sweep_id = new_sweep_id()
        manifest = SweepManifest(
            sweep_id=sweep_id,
            argv=["main.py", f"x=range(0,{points})"],
            cwd=str(root),
            project_dir=str(root),
            script=str(root / "main.py"),
            sweeper={"name": "BasicSweeper", "settings": {}},
            points=[SweepPoint(i, [f"x={i}", "lr=0.1"]) for i in range(points)],
        )
        manifest.write(root)
        lines = []
        stale = time.time() - 3600
        for i in range(points):
            if i % 50 == 7:  # missing: never started
                continue
            status = "FAILED" if i % 10 == 3 else "RUNNING" if i % 25 == 11 else "COMPLETE"
            uid = new_uid()
            run = root / str(i + 1)
            (run / "metadata").mkdir(parents=True)
            info = {
                "format": 1,
                "uid": uid,
                "status": status,
                "log_id": i + 1,
                "log_dir": str(run),
                "heartbeat_interval_s": 10.0,
                "hostname": "elsewhere",
                "overrides": [f"x={i}", "lr=0.1"],
                "sweep_id": sweep_id,
                "sweep_point": i,
            }
            (run / "metadata" / "run.json").write_bytes(
                codec.encode({"config": {"x": i, "lr": 0.1}, "info": info})
            )
            atomic_write_yaml(run / "metadata" / "info.yaml", info)
            paths = RunDir(run)
            paths.heartbeat.touch()
            os.utime(paths.heartbeat, (stale, stale))
            paths.lock.touch()  # free: the process is gone
            lines.append(json.dumps({"point": i, "log_id": i + 1, "uid": uid}))
        (sweep_dir(root, sweep_id) / JOURNAL_FILE).write_text("\n".join(lines) + "\n")
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            plan = plan_resume(root, SweepManifest.read(root, sweep_id))
            timings.append(time.perf_counter() - start)
        from collections import Counter

        todo = Counter(s.status for s in plan.todo)
        print(f"planning the resume of {points} points (manifest + journal + run dirs):")
        print(f"  to rerun: {len(plan.todo)} {dict(todo)}")
        print(f"  time: first {timings[0]:.3f} s, best of 3 {min(timings):.3f} s (goal <= 1 s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--killed", type=int, default=37)
    parser.add_argument("--plan-points", type=int, default=5000)
    parser.add_argument("--skip-run", action="store_true", help="only time the planning")
    args = parser.parse_args()
    plan_time(args.plan_points)
    if not args.skip_run:
        rerun_exactly(args.points, args.killed)


if __name__ == "__main__":
    main()
