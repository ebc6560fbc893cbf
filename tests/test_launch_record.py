"""One launch record per job: a submitted job's command is the script with its own overrides,
and everything mlxpy tells the job (claimed run dir, scheduler and settings, config dir)
comes from the record its script exports. Real launches, real LocalScheduler jobs."""

from __future__ import annotations

import shlex
import sys

import pytest
import yaml
from mlxpy.launching.record import ENV_VAR, LaunchRecord, RunClaim, SchedulerChoice
from mlxpy.rundir.layout import RunDir
from mlxpy.testing import ProjectDir

SUITE_CONFIG = {"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0}


def test_job_commands_carry_only_the_jobs_own_overrides(tmp_path):
    project = ProjectDir(tmp_path / "p")
    project.write_config(SUITE_CONFIG)
    project.write_config(
        {"scheduler": {"name": "LocalScheduler", "max_workers": 2}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    result = project.run("seed=1,2", "msg=a,b")
    assert result.returncode == 0, result.stderr
    infos = project.wait(4, 120)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 4, infos
    for run_dir, info in zip(project.run_dirs(), infos, strict=True):
        script = RunDir(run_dir).job_script.read_text()
        assert "mlxpy." not in script  # no forced +mlxpy.* override, nothing but the record
        (exec_line,) = [line for line in script.splitlines() if line.startswith("exec ")]
        command = shlex.split(exec_line)[1:]
        assert command == [sys.executable, str(project.root / "main.py"), *info["overrides"]]
        exports = [line for line in script.splitlines() if line.startswith("export ")]
        assert exports == [f"export {ENV_VAR}={RunDir(run_dir).launch_record}"]
        record = LaunchRecord.read(RunDir(run_dir).launch_record)
        assert record.claim == RunClaim(info["log_id"], str(run_dir))
        assert record.scheduler == SchedulerChoice("LocalScheduler", {"max_workers": 2})
        assert record.config_dir == str(project.configs)
        assert record.project_dir == str(project.root)
        # the run says what the user typed, and how its scheduler was built
        assert info["argv"] == [str(project.root / "main.py"), "seed=1,2", "msg=a,b"]
        assert info["scheduler"]["settings"] == {"max_workers": 2}
    seen = {(project.config(d)["seed"], project.config(d)["msg"]) for d in project.run_dirs()}
    assert seen == {(1, "a"), (1, "b"), (2, "a"), (2, "b")}


TAGGED_SCHEDULER = """
from mlxpy.scheduling.local import LocalScheduler


class TaggedScheduler(LocalScheduler):
    name = "TaggedScheduler"

    def __init__(self, tag: str = "", **kwargs):
        super().__init__(**kwargs)
        self.tag = tag

    def current_job(self):  # recorded in info.scheduler when the job starts
        return {**super().current_job(), "tag": self.tag}
"""


def test_a_job_keeps_the_submitting_schedulers_settings(tmp_path):
    """mlxpy.yaml changes between submission and the job's start: the job still builds the
    scheduler that submitted it (the record's settings), and never reads the new block."""
    project = ProjectDir(tmp_path / "p")
    (project.root / "tagged.py").write_text(TAGGED_SCHEDULER)
    project.write_config(SUITE_CONFIG)
    go = tmp_path / "go"
    settings = {
        "tag": "submitted",
        "max_workers": 1,
        # the job script waits here, before Python starts, until mlxpy.yaml has changed
        "shell_config_cmd": f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.1; done",
    }
    options = {"scheduler": {"name": "tagged.TaggedScheduler", **settings}, "use_scheduler": True}
    project.write_config(options, "mlxpy.yaml")
    result = project.run("seed=3")
    assert result.returncode == 0, result.stderr
    (run_dir,) = project.run_dirs()
    assert project.info(run_dir)["status"] == "SUBMITTED"
    changed = {
        "scheduler": {"name": "tagged.TaggedScheduler", "tag": "changed", "max_workers": "many"},
        "use_scheduler": False,
    }
    project.write_config(changed, "mlxpy.yaml")  # a wrong type too: it is never read
    go.touch()
    (info,) = project.wait(1, 120)
    assert info["status"] == "COMPLETE", (info, RunDir(run_dir).job_stderr.read_text())
    assert info["scheduler"]["tag"] == "submitted"
    assert info["scheduler"]["name"] == "TaggedScheduler"
    assert info["scheduler"]["settings"] == settings
    # the run's options show the scheduler that ran it, not the edited file
    saved = yaml.safe_load(RunDir(run_dir).options.read_text())
    assert saved["scheduler"] == {"name": "tagged.TaggedScheduler", **settings}
    # and the edited file does apply to the next launch
    bad = project.run("seed=4", "+mlxpy.use_scheduler=true")
    assert bad.returncode == 2 and "scheduler.max_workers" in bad.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read the launch record"),
        ("{not json", "cannot read the launch record"),
        ('{"format": 99}', "is malformed (format 99"),
        (
            '{"format": 1, "project_dir": "/p", "config_dir": "/p/c", "argv": [],'
            ' "claim": {"log_id": 2, "log_dir": "/p/logs/3"}}',
            "claim must name a run dir",
        ),
    ],
)
def test_a_bad_launch_record_is_a_setup_error(tmp_path, content, message):
    project = ProjectDir(tmp_path / "p")
    project.write_config(SUITE_CONFIG)
    path = tmp_path / "launch.json"
    if content is not None:
        path.write_text(content)
    project.env = {ENV_VAR: str(path)}
    result = project.run()
    assert result.returncode == 2
    assert result.stderr.startswith("mlxpy: error: ") and message in result.stderr
    assert str(path) in result.stderr and ENV_VAR in result.stderr
    assert "Traceback" not in result.stderr and project.run_dirs() == []
