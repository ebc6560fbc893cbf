"""Learning curves and the HTML report, checked from the figure objects, the files, and the
report rendered by headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import mlxpy  # noqa: E402
import pytest  # noqa: E402
from conftest import require  # noqa: E402

TASK = """
import time
import mlxpy

@mlxpy.launch(config_path="./configs")
def task(ctx):
    c = ctx.config
    for step in range(c.steps):
        ctx.logger.log_metrics({"loss": c.lr * step + c.seed}, step=step)
    if c.hang:
        ctx.logger.flush()
        open(c.ready, "w").close()
        time.sleep(60)

if __name__ == "__main__":
    task()
"""

ARTIFACTS = Path(os.environ.get("MLXPY_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from conftest import Project

    root = tmp_path_factory.mktemp("plots")
    project = Project(root, root)
    project.write_main(TASK)
    project.write_config("seed: 0\nlr: 0.1\nsteps: 5\nhang: false\nready: ''\n")
    result = project.run("lr=0.1,1.0", "seed=1,2,3")
    assert result.returncode == 0, result.stderr
    return project


def test_plot_lines_labels_and_values(sweep):
    runs = mlxpy.Reader(sweep.logs).filter()
    fig = runs.mlxpy.plot("train.loss", by=["config.lr"], over="config.seed")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"lr=0.1", "lr=1.0"}
    for lr, line in ((0.1, lines["lr=0.1"]), (1.0, lines["lr=1.0"])):
        assert list(line.get_xdata()) == [0, 1, 2, 3, 4]
        # by hand: mean over seeds 1, 2, 3 of lr * step + seed
        assert list(line.get_ydata()) == pytest.approx([lr * s + 2 for s in range(5)])
    bands = ax.collections
    assert len(bands) == 2  # one shaded ± std band per line
    lower = bands[0].get_paths()[0].vertices[:, 1].min()
    assert lower == pytest.approx(2 - 1.0)  # std over seeds 1, 2, 3 is 1
    assert ax.get_ylabel() == "train.loss" and ax.get_legend().get_title().get_text() == "lr"
    log_fig = runs.mlxpy.plot("train.loss", by=["config.lr"], logy=True)
    assert log_fig.axes[0].get_yscale() == "log"


def test_bad_metric_and_missing_log(sweep):
    runs = mlxpy.Reader(sweep.logs).filter()
    with pytest.raises(ValueError, match="<log name>.<key>"):
        runs.mlxpy.plot("loss")
    with pytest.raises(mlxpy.MlxpyError, match="no records of 'valid.loss'"):
        runs.mlxpy.plot("valid.loss")


CURVES = ["-m", "train.loss", "--by", "config.lr", "--over", "config.seed"]


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "mlxpy.cli", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize(
    "suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")]
)
def test_cli_writes_figures(sweep, tmp_path, suffix, magic):
    out = tmp_path / f"curves{suffix}"
    result = cli(
        "plot",
        str(sweep.logs),
        "-q",
        "config.lr == 1.0",
        *CURVES,
        "-o",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(magic)
    if suffix == ".svg":
        assert "<svg" in out.read_text() and "lr=1.0" in out.read_text()


def test_cli_errors(sweep, tmp_path):
    bad = cli("plot", str(sweep.logs), "-q", "config.lr <", "-m", "train.loss", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.rstrip().endswith("^")
    bad = cli("plot", str(sweep.logs), "-m", "train.loss", "-o", "x.gif", cwd=tmp_path)
    assert bad.returncode == 2 and ".png, .svg or .pdf" in bad.stderr


def test_html_report_rendered_by_chromium(sweep, tmp_path):
    report = tmp_path / "report.html"
    result = cli(
        "plot",
        str(sweep.logs),
        *CURVES,
        "--html",
        str(report),
        "--title",
        "Sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
    chromium = shutil.which("chromium")
    require(chromium is not None, "needs chromium: apt-get install chromium (as root)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "<h1>Sweep</h1>" in dom and "Runs (6)" in dom
    body = dom.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr") == 6  # one row per run
    assert "COMPLETE" in dom and 'alt="train.loss"' in dom
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1000,1400", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_running_runs_plot_their_flushed_records(tmp_path):
    from conftest import Project

    project = Project(tmp_path, tmp_path)
    project.write_main(TASK)
    ready = tmp_path / "ready"
    project.write_config(f"seed: 1\nlr: 1.0\nsteps: 3\nhang: true\nready: '{ready}'\n")
    proc = project.popen()
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        runs = mlxpy.Reader(project.logs).filter("info.status == 'RUNNING'")
        (line,) = runs.mlxpy.plot("train.loss").axes[0].get_lines()
        assert list(line.get_ydata()) == [1.0, 2.0, 3.0]
    finally:
        proc.kill()
        proc.communicate()
