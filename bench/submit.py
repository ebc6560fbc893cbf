"""Submitting a large sweep (default 5,000 points) to the real SLURM cluster, whose
MaxArraySize is 1001 (scripts/clusters/slurm.sh): as job arrays split at that limit (mlxpy's
default) and as one ``sbatch`` per point (``use_arrays: false``, MLXP's way). For each: how
many ``sbatch`` calls, the time until the launch returns, the time spent inside scheduler
commands, and then the time and scheduler calls of ``mlxpy status`` over the whole sweep.

The points never run: they are submitted held (``--hold``) and cancelled (``scancel``) right
after, so the 2-core machine is not flooded. Run it under the cluster lock:

    flock /tmp/mlxpy-cluster.lock python bench/submit.py [--jobs 5000] [--single-jobs N]
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
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    pass

if __name__ == "__main__":
    task()
"""

# Count scheduler commands: wrappers on PATH that log each call and its duration, then
# return the real command's output and status.
WRAPPER = """#!/bin/sh
start=$(date +%s.%N)
{real} "$@"
status=$?
echo "$(basename "$0") $start $(date +%s.%N)" >> {log}
exit $status
"""


def calls(log: Path) -> tuple[dict[str, int], float]:
    """Scheduler commands by name, and the seconds spent in them."""
    counts: dict[str, int] = {}
    spent = 0.0
    for line in log.read_text().splitlines():
        name, start, end = line.split()
        counts[name] = counts.get(name, 0) + 1
        spent += float(end) - float(start)
    return counts, spent


def describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} x{counts[name]}" for name in sorted(counts))


def project_dir(root: Path, arrays: bool) -> Path:
    project = root / ("arrays" if arrays else "one_sbatch_per_point")
    (project / "configs").mkdir(parents=True)
    (project / "configs" / "config.yaml").write_text("seed: 0\n")
    (project / "configs" / "mlxpy.yaml").write_text(
        "scheduler:\n  name: SLURMScheduler\n  option_cmd: ['--hold']\n"
        f"  use_arrays: {'true' if arrays else 'false'}\nuse_scheduler: true\n"
    )
    (project / "main.py").write_text(MAIN)
    return project


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument(
        "--single-jobs",
        type=int,
        default=0,
        help="points for one sbatch per point (default --jobs)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlxpy-submit-"))
    try:
        bin_dir, log = tmp / "bin", tmp / "calls.log"
        bin_dir.mkdir()
        for command in ("sbatch", "scontrol", "squeue", "scancel", "sacct", "sacctmgr"):
            real = shutil.which(command)
            if real is None:
                if command in ("sacct", "sacctmgr"):
                    continue
                raise SystemExit(f"{command} not found: start the test cluster first")
            wrapper = bin_dir / command
            wrapper.write_text(WRAPPER.format(log=log, real=real))
            wrapper.chmod(0o755)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        print(f"MaxArraySize: {max_array_size()}")
        for arrays in (True, False):
            points = args.jobs if arrays else (args.single_jobs or args.jobs)
            project = project_dir(tmp, arrays)
            label = "arrays" if arrays else "one sbatch per point"
            log.write_text("")
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "main.py", f"seed=range(0,{points})"],
                cwd=project,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            elapsed = time.perf_counter() - start
            counts, spent = calls(log)
            print(
                f"{label:21s} {points} points: returned in {elapsed:6.2f} s, "
                f"{counts.get('sbatch', 0)} sbatch calls, {spent:6.2f} s in scheduler "
                f"commands ({describe(counts)})"
            )
            log.write_text("")
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "mlxpy.cli", "status", "--format", "json"],
                cwd=project,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            elapsed = time.perf_counter() - start
            rows = json.loads(out)
            counts, _ = calls(log)
            pending = sum(r["scheduler_state"] == "PENDING" for r in rows)
            print(
                f"{'':21s} mlxpy status: {len(rows)} runs ({pending} PENDING) in "
                f"{elapsed:6.2f} s, {describe(counts)}"
            )
            cancel_under(tmp)
    finally:
        cancel_under(tmp)
        shutil.rmtree(tmp)


def cancel_under(root: Path) -> None:
    """``scancel`` this benchmark's jobs (those started in its temp dir), no one else's."""
    out = subprocess.run(
        ["squeue", "-h", "--me", "-o", "%F %Z"], capture_output=True, text=True
    ).stdout
    ids = sorted(
        {
            job
            for job, _, workdir in (line.partition(" ") for line in out.splitlines())
            if workdir.startswith(str(root))
        }
    )
    if ids:
        subprocess.run(["scancel", "--quiet", *ids], check=False)


def max_array_size() -> str:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("MaxArraySize"):
            return line.split("=", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    main()
