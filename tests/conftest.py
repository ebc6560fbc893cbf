"""Shared fixtures: a fresh project directory with the README's main.py, run as a real
``python main.py ...`` subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

#: set by scripts/test (so in CI): a test that would skip for want of root or chromium fails
STRICT = os.environ.get("MLXPY_TEST_STRICT") == "1"


def untimed(records: list[dict]) -> list[dict]:
    """Metric records without their wall-clock time (``_time``), which every record the
    logger writes carries: checked here (a float, now or a moment ago, never going back), so
    a test comparing exact records compares what the task logged."""
    now = time.time()
    times = [r["_time"] for r in records]
    assert all(type(t) is float and now - 3600 < t <= now for t in times), times
    assert times == sorted(times), times
    return [{k: v for k, v in r.items() if k != "_time"} for r in records]


def require(available: bool, reason: str) -> None:
    """Skip the test for want of something only root has or can install (the fast path:
    ``pytest -m "not cluster"`` as a user); fail it instead under ``MLXPY_TEST_STRICT=1``."""
    if available:
        return
    if STRICT:
        pytest.fail(f"{reason} (MLXPY_TEST_STRICT=1: every test must run)", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.root`` tests need root: checked before their fixtures mount anything."""
    if item.get_closest_marker("root"):
        require(os.geteuid() == 0, "needs root to mount a tmpfs: run as root, or -m 'not root'")


@contextlib.contextmanager
def tmpfs(mount: Path, size: str):
    """A real tmpfs of ``size`` (``2m``) mounted at ``mount``, lazily unmounted afterwards;
    needs root, so a test using it carries ``@pytest.mark.root``. A failed mount fails the
    test: full-disk tests never skip as root."""
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


# The README's quick start, kept in one file that the README test checks against the README.
QUICKSTART_MAIN = (REPO / "examples" / "quickstart" / "main.py").read_text()

SEED_CONFIG = "seed: null\nmodel:\n  num_layers: 4\noptimizer:\n  lr: 1e-3\n"


class Project:
    """A temp project: ``root/main.py`` plus ``root/configs``; commands run from ``cwd``."""

    def __init__(self, root: Path, cwd: Path) -> None:
        self.root = root
        self.cwd = cwd
        self.configs = root / "configs"
        self.logs = root / "logs"

    def write_main(self, source: str) -> None:
        (self.root / "main.py").write_text(textwrap.dedent(source))

    def write_config(self, text: str, name: str = "config.yaml") -> None:
        path = self.configs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    def run(
        self, *args: str, timeout: float = 60, env: dict | None = None, script: str = "main.py"
    ) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, str(self.root / script), *args],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(self.root / "main.py"), *args],
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def run_dirs(self) -> list[Path]:
        if not self.logs.exists():
            return []
        return sorted(
            (p for p in self.logs.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )

    def info(self, run_dir: Path) -> dict:
        return yaml.safe_load((run_dir / "metadata" / "info.yaml").read_text())

    def config(self, run_dir: Path) -> dict:
        return yaml.safe_load((run_dir / "metadata" / "config.yaml").read_text())


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """The README quick start; commands run from a separate, empty cwd."""
    root = tmp_path / "proj"
    root.mkdir()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proj = Project(root, cwd)
    proj.write_main(QUICKSTART_MAIN)
    return proj


@pytest.fixture
def seeded(project: Project) -> Project:
    """The quick start with the seed's config.yaml."""
    project.write_config(SEED_CONFIG)
    return project
