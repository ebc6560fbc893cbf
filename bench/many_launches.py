"""200 simultaneous ``python main.py`` launches into one parent log dir: are the ids unique,
is every run dir complete, and does id allocation add waiting? The wall time is compared with
the launches' total CPU time divided by the cores (1.0x means no waiting at all).

Usage: python bench/many_launches.py [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAIN = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    ctx.logger.log_metrics({"seed": ctx.config.seed}, step=0)

if __name__ == "__main__":
    my_task()
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlxpy-many-"))
    try:
        (root / "configs").mkdir()
        (root / "configs" / "config.yaml").write_text("seed: 0\n")
        (root / "main.py").write_text(MAIN)
        subprocess.run(
            [sys.executable, "main.py", "--cfg", "job"],
            cwd=root,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "main.py", f"seed={i}"], cwd=root, stdout=subprocess.DEVNULL
            )
            for i in range(args.jobs)
        ]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        runs = sorted(int(p.name) for p in (root / "logs").iterdir())
        complete = sum(
            (root / "logs" / str(r) / "metadata" / "info.yaml")
            .read_text()
            .startswith("status: COMPLETE")
            for r in runs
        )
        cores = os.cpu_count() or 1
        print(
            f"{args.jobs} launches, {cores} cores: failures {sum(c != 0 for c in codes)}, "
            f"ids unique and 1..{args.jobs}: {runs == list(range(1, args.jobs + 1))}, "
            f"complete dirs: {complete}"
        )
        print(
            f"wall {wall:.1f} s, CPU {cpu:.1f} s, CPU/cores {cpu / cores:.1f} s, "
            f"wall / (CPU/cores) = {wall / (cpu / cores):.2f}x (goal <= 1.2x)"
        )
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
