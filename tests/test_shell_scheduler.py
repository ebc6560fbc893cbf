"""A new scheduler plugin needs no change to the core: ShellScheduler
(tests/plugins/shell_scheduler), a package of its own installed with pip into a temp dir put on
the jobs' PYTHONPATH, passes SchedulerSuite; the core names no scheduler's words; and
``mlxpy status``/``cancel`` build each run's scheduler from what the run recorded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlxpy.rundir.info import read_info, write_info
from mlxpy.rundir.layout import OPTIONS_FILE, RunDir
from mlxpy.testing import COMPLETE, ProjectDir, SchedulerSuite

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "tests" / "plugins" / "shell_scheduler"
JOB_ID = r"sh-[0-9a-f]{12}"


@pytest.fixture(scope="session")
def shell_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed by pip (its entry point and all) into a fresh site dir, from a
    copy of its source, so the build leaves nothing in the repository."""
    work = tmp_path_factory.mktemp("shell-plugin")
    source = shutil.copytree(PLUGIN, work / "src")
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + ["--no-build-isolation", "--target", str(site), str(source)],
        check=True,
        capture_output=True,
    )
    return site


def on_path(project: ProjectDir, site: Path) -> None:
    """Make the installed plugin importable by the project's processes (launch, jobs, CLI)."""
    project.env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p
    )


class TestShellSchedulerConformance(SchedulerSuite):
    scheduler_name = "ShellScheduler"
    timeout = 120

    @pytest.fixture(autouse=True)
    def _installed(self, shell_site: Path, tmp_path: Path) -> None:
        self.site = shell_site
        # not the default: `mlxpy status` and `cancel` find the jobs through the settings
        # each run recorded
        self.scheduler_settings = {"state_dir": str(tmp_path / "jobs")}

    def prepare_project(self, project: ProjectDir) -> None:
        on_path(project, self.site)

    def check_job_id(self, job_id: str, array: bool) -> None:
        assert re.fullmatch(JOB_ID, job_id), job_id  # no arrays: one job per run

    def rejected_override(self) -> list[str]:
        return ["+mlxpy.scheduler.option_cmd=['--no-such-directive']"]

    def separate_jobs_overrides(self) -> list[str]:
        return []  # no arrays: every sweep is one job per run

    def pending_overrides(self) -> list[str]:
        return ["+mlxpy.scheduler.option_cmd=['--hold']"]


def _tracked(folder: Path) -> list[Path]:
    """The files git tracks under ``folder`` (not build metadata such as ``*.egg-info``)."""
    out = subprocess.run(
        # safe.directory: a checkout owned by another user (root's, run as nobody) is ours to read
        ["git", "-c", "safe.directory=*", "ls-files", "-z", str(folder)],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return sorted(REPO / name for name in out.stdout.decode().split("\0") if name)


def test_core_names_no_scheduler_and_no_plugin():
    """Everything a scheduler calls its states, its commands and its name lives in its own
    plugin: the core (mlxcore/) has none of them, not even in a comment."""
    words = re.compile(
        r"SLURM|\bOAR|sbatch|scancel|squeue|scontrol|oarsub|oardel|oarstat|"
        r"mlx_slurm|mlx_oar|mlxpy-slurm|mlxpy-oar|ShellScheduler|shell_scheduler|"
        r"\b(PENDING|COMPLETING|Terminated|toLaunch|JobHeldUser)\b"
    )
    builtin = REPO / "mlxcore" / "mlxpy" / "scheduling" / "local.py"  # its own words
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in _tracked(REPO / "mlxcore")
        if path.suffix in (".py", ".toml", ".md", ".txt", ".cfg")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if words.search(line) and path != builtin
    ]
    assert found == []


def shell_project(tmp_path: Path, site: Path, state_dir: Path) -> ProjectDir:
    project = ProjectDir(tmp_path / "proj")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config(
        {
            "scheduler": {"name": "ShellScheduler", "state_dir": str(state_dir)},
            "use_scheduler": True,
        },
        OPTIONS_FILE,
    )
    on_path(project, site)
    return project


def rewrite_scheduler_info(run_dir: Path, **changes: object) -> None:
    """Change what a run recorded of its scheduler (``None`` removes a key), as an older
    mlxpy, another user or a damaged shared dir would have left it."""
    run = RunDir(run_dir)
    info = read_info(run_dir)
    assert info is not None
    for key, value in changes.items():
        if value is None:
            info["scheduler"].pop(key, None)
        else:
            info["scheduler"][key] = value
    config = json.loads(run.run_json.read_text())["config"]
    write_info(run_dir, info, config)


def test_status_builds_the_scheduler_the_run_recorded(tmp_path, shell_site):
    """A job kept in a non-default ``state_dir``: `mlxpy status` finds it through the run's
    ``info.scheduler.settings``, whatever mlxpy.yaml says now; a run that recorded no
    settings (written by an older mlxpy) gets the scheduler's defaults."""
    jobs = tmp_path / "jobs"
    project = shell_project(tmp_path, shell_site, jobs)
    assert project.run().returncode == 0
    (info,) = project.wait(1, 60)
    assert info["status"] == COMPLETE, info
    (run_dir,) = project.run_dirs()
    assert info["scheduler"]["settings"] == {"state_dir": str(jobs)}  # as submitted
    options = project.options()
    options["scheduler"]["state_dir"] = str(tmp_path / "elsewhere")
    project.write_config(options, OPTIONS_FILE)  # the project changed since the submission
    (row,) = project.status()
    assert (row["scheduler_state"], row["phase"], row["exit_code"]) == ("COMPLETED", "DONE", 0)
    assert re.fullmatch(JOB_ID, row["job_id"]) and row["status"] == COMPLETE

    rewrite_scheduler_info(run_dir, settings=None)  # defaults: the temp dir, not `jobs`
    (row,) = project.status()
    assert row["scheduler_state"] == "(gone)" and row["phase"] is None, row


@pytest.mark.parametrize(
    "settings, why",
    [
        ({"no_such_setting": 1}, "Unknown option 'scheduler.no_such_setting'"),
        ({"state_dir": ["not", "a", "string"]}, "must be of type str"),
        ("state_dir=/tmp", "must be a mapping"),
    ],
)
def test_bad_recorded_settings_are_refused(tmp_path, shell_site, settings, why):
    project = shell_project(tmp_path, shell_site, tmp_path / "jobs")
    assert project.run().returncode == 0
    project.wait(1, 60)
    (run_dir,) = project.run_dirs()
    rewrite_scheduler_info(run_dir, settings=settings)
    (row,) = project.status()
    assert row["scheduler_state"] == "(bad settings)" and why in row["reason"], row
    assert row["status"] == row["run_status"] == COMPLETE
    cancelled = project.mlxpy("cancel", "1")
    assert cancelled.returncode == 2
    assert "nothing cancelled: run 1:" in cancelled.stderr and why in cancelled.stderr


def test_errors_list_the_installed_schedulers(tmp_path, shell_site):
    project = shell_project(tmp_path, shell_site, tmp_path / "jobs")
    options = project.options()
    project.write_config({**options, "scheduler": {"name": "Scheduler"}}, OPTIONS_FILE)
    result = project.run()  # the base class: it cannot submit
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "cannot submit jobs" in x]
    installed = line.split("(installed: ", 1)[1].split(")", 1)[0].split(", ")
    assert {"LocalScheduler", "ShellScheduler"} <= set(installed)
    assert "Scheduler" not in installed  # only those that can submit

    project.write_config(options, OPTIONS_FILE)
    assert project.run().returncode == 0
    project.wait(1, 60)
    (run_dir,) = project.run_dirs()
    rewrite_scheduler_info(run_dir, name="os.system")  # data: never imported
    (row,) = project.status()
    assert row["scheduler_state"] == "(unknown scheduler)"
    assert "not imported" in row["reason"] and "ShellScheduler" in row["reason"]


def test_mlxpsub_finds_a_scheduler_by_its_own_directive_prefix(tmp_path, shell_site):
    """mlxpsub knows no scheduler: installed, ShellScheduler's ``directive_prefix`` makes a
    script's ``#SHELL`` lines select it (though mlxpy.yaml selects another), its
    ``reserved_directives`` refuse what its job scripts set; not installed, the same script
    is refused with what to install."""
    project = ProjectDir(tmp_path / "proj")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config({"scheduler": {"name": "LocalScheduler"}}, OPTIONS_FILE)
    jobs = tmp_path / "jobs"
    (project.root / "held.sh").write_text(
        f"#!/bin/bash\n#SHELL --hold\n{sys.executable} main.py seed=1,2 "
        f"+mlxpy.scheduler.state_dir={jobs}\n"
    )
    (project.root / "output.sh").write_text(
        f"#SHELL --hold\n#SHELL --output=out.txt\n{sys.executable} main.py\n"
    )
    missing = project.mlxpy("sub", "held.sh")  # the plugin is not on the path yet
    assert missing.returncode == 2 and project.run_dirs() == []
    assert "held.sh, line 2: '#SHELL --hold': no installed scheduler writes '#SHELL'" in (
        missing.stderr
    )
    assert "install the scheduler plugin for your cluster" in missing.stderr

    on_path(project, shell_site)
    refused = project.mlxpy("sub", "output.sh")
    assert refused.returncode == 2 and project.run_dirs() == []
    assert "output.sh, line 2: '#SHELL --output=out.txt': --output is set by mlxpy" in (
        refused.stderr
    )
    assert "(mlxpy writes each job's output into its run dir)" in refused.stderr

    submitted = project.mlxpy("sub", "held.sh")
    assert submitted.returncode == 0, submitted.stderr
    rows = project.status()
    try:
        assert len(rows) == 2
        for row in rows:  # held: the script's directive reached the scheduler
            assert (row["scheduler_state"], row["phase"]) == ("HELD", "QUEUED"), row
        for run_dir in project.run_dirs():
            info = project.info(run_dir)
            assert info["scheduler"]["name"] == "ShellScheduler"
            assert info["scheduler"]["settings"]["option_cmd"] == ["--hold"]
            assert "#SHELL --hold" in (run_dir / "script.sh").read_text()
    finally:
        cancelled = project.mlxpy("cancel", *(str(row["log_id"]) for row in rows))
    assert cancelled.returncode == 0, cancelled.stderr
