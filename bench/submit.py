"""Submitting a 200-job sweep to the real SLURM cluster: as one job array (mlxpy's default)
and as one ``sbatch`` per job (MLXP's way). Time until the launch returns, and how many
scheduler commands were run. Jobs are cancelled right after submission.

Usage: python bench/submit.py [--jobs N]   (needs scripts/clusters/slurm.sh start)
"""

from __future__ import annotations

import argparse
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

# Count scheduler commands: wrappers on PATH that log each call, then run the real one.
WRAPPER = """#!/bin/sh
echo "$(basename "$0")" >> {log}
exec {real} "$@"
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlxpy-submit-"))
    try:
        bin_dir, log = tmp / "bin", tmp / "calls.log"
        bin_dir.mkdir()
        for command in ("sbatch", "scontrol", "squeue", "scancel"):
            real = shutil.which(command)
            if real is None:
                raise SystemExit(f"{command} not found: start the test cluster first")
            wrapper = bin_dir / command
            wrapper.write_text(WRAPPER.format(log=log, real=real))
            wrapper.chmod(0o755)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        for label, arrays in (("one array", "true"), ("one sbatch per job", "false")):
            project = tmp / label.replace(" ", "_")
            (project / "configs").mkdir(parents=True)
            (project / "configs" / "config.yaml").write_text("seed: 0\n")
            (project / "configs" / "mlxpy.yaml").write_text(
                "scheduler:\n  name: SLURMScheduler\nuse_scheduler: true\n"
            )
            (project / "main.py").write_text(MAIN)
            log.write_text("")
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "main.py",
                    f"seed=range(0,{args.jobs})",
                    f"+mlxpy.scheduler.use_arrays={arrays}",
                ],
                cwd=project,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            elapsed = time.perf_counter() - start
            calls = log.read_text().split()
            print(
                f"{label:20s}: returned in {elapsed:6.2f} s, scheduler commands: "
                f"{len(calls)} ({', '.join(f'{c} x{calls.count(c)}' for c in sorted(set(calls)))})"
            )
            subprocess.run(["scancel", "--quiet", "-u", os.environ.get("USER", "root")])
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
