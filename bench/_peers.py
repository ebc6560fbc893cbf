"""Peers the benchmarks compare against, each in a venv of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def mlxp_python(given: str | None) -> str:
    """A Python with MLXP 1.0.5: ``given``, or a venv made on first use under
    ``~/.cache/mlxpy-bench``."""
    if given:
        return given
    venv = Path.home() / ".cache" / "mlxpy-bench" / "mlxp-1.0.5"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlxp==1.0.5"], check=True)
    return str(python)
