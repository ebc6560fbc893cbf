"""Median wall time of ``python main.py`` for a trivial task: mlxpy (logger on) against the
same task under plain ``@hydra.main``, on the same machine in the same run.

Both run from cached bytecode, as installed packages do: ``PYTHONDONTWRITEBYTECODE`` is
dropped for the launches (otherwise an editable mlxpy is compiled again at every launch while
Hydra's site-packages are not). mlxpy's second and later plain launches take the composed
config from its cache (``$XDG_CACHE_HOME/mlxpy/compose``): the warm-up launch fills it.

Usage: python bench/launch.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = "seed: null\nmodel:\n  num_layers: 4\noptimizer:\n  lr: 1e-3\n"

MLXPY_MAIN = """
import mlxpy

@mlxpy.launch(config_path="./configs")
def my_task(ctx):
    print(ctx.config.optimizer.lr)

if __name__ == "__main__":
    my_task()
"""

HYDRA_MAIN = """
import hydra

@hydra.main(config_path="./configs", config_name="config", version_base=None)
def my_task(cfg):
    print(cfg.optimizer.lr)

if __name__ == "__main__":
    my_task()
"""


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def make_project(root: Path, source: str) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "config.yaml").write_text(CONFIG)
    (root / "main.py").write_text(source)
    return root / "main.py"


def time_once(script: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(script)],
        cwd=script.parent,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlxpy-bench-"))
    try:
        scripts = {
            "mlxpy": make_project(tmp / "mlxpy", MLXPY_MAIN),
            "hydra": make_project(tmp / "hydra", HYDRA_MAIN),
        }
        for script in scripts.values():  # warm the file cache, create default files
            time_once(script)
        times: dict[str, list[float]] = {name: [] for name in scripts}
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            for name, script in scripts.items():
                times[name].append(time_once(script))
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, value in medians.items():
            print(f"{name:6s} median {value * 1000:7.1f} ms over {args.runs} runs")
        print(f"ratio mlxpy / plain hydra: {medians['mlxpy'] / medians['hydra']:.2f}x")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
