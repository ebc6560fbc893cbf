"""The builtin LocalScheduler passes the same conformance suite as the cluster plugins."""

from __future__ import annotations

import time

import pytest
from mlxpy.testing import ProjectDir, SchedulerSuite


class TestLocalSchedulerConformance(SchedulerSuite):
    scheduler_name = "LocalScheduler"
    scheduler_settings = {"max_workers": 2}
    timeout = 120

    def check_job_id(self, job_id: str, array: bool) -> None:
        queue, _, task = job_id.rpartition("_")
        assert queue.startswith("q") and task.isdigit()

    def rejected_override(self) -> list[str]:
        return ["+mlxpy.scheduler.shell_path=/no/such/shell"]

    def pending_overrides(self) -> list[str]:
        return ["seed=1,2", "+mlxpy.scheduler.max_workers=1"]  # run 1 holds the one worker


def test_max_workers_bounds_parallelism(tmp_path):
    project = ProjectDir(tmp_path / "p")
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "sleep", "sleep": 1.5})
    project.write_config(
        {"scheduler": {"name": "LocalScheduler", "max_workers": 2}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    start = time.monotonic()
    result = project.run("seed=1,2,3,4")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 10  # returned without waiting
    infos = project.wait(4, 60)
    assert [i["status"] for i in infos] == ["COMPLETE"] * 4
    spans = sorted((i["start_time"], i["end_time"]) for i in infos)
    overlapping = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert overlapping == 2


RAISING_HOOKS = """
import os
import mlxpy
from mlxpy.plugins import get_plugins

class Raising:
    seen = 0

    @mlxpy.hookimpl
    def mlxpy_before_job_submit(self, job):
        Raising.seen += 1
        if os.environ.get("FAIL_AT") == "before" and Raising.seen == 2:
            raise RuntimeError("no second job")

    @mlxpy.hookimpl
    def mlxpy_after_job_submit(self, job, job_id):
        if os.environ.get("FAIL_AT") == "after":
            raise RuntimeError("after hook broke")

get_plugins().register(Raising(), name="raising")
"""


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_submission_hook_that_raises_leaves_honest_records(tmp_path, where):
    """``before``: the runs already claimed end SUBMIT_FAILED (none stays SUBMITTED, nothing
    runs). ``after``: every job the scheduler accepted keeps its job id and runs."""
    from mlxpy.testing import SUITE_TASK

    project = ProjectDir(
        tmp_path / "p", SUITE_TASK.replace("import mlxpy\n", "import mlxpy\nimport hooks\n", 1)
    )
    (project.root / "hooks.py").write_text(RAISING_HOOKS)
    project.write_config({"seed": 0, "lr": 0.1, "msg": "", "mode": "ok", "sleep": 0})
    project.write_config(
        {"scheduler": {"name": "LocalScheduler", "max_workers": 2}, "use_scheduler": True},
        "mlxpy.yaml",
    )
    project.env["FAIL_AT"] = where
    result = project.run("seed=1,2,3")
    assert result.returncode != 0
    if where == "before":
        infos = [project.info(d) for d in project.run_dirs()]
        assert [i["status"] for i in infos] == ["SUBMIT_FAILED"] * 2, infos
        assert all("no second job" in i["error"]["message"] for i in infos)
        assert all("job_id" not in i["scheduler"] for i in infos)
    else:
        assert "after hook broke" in result.stderr
        infos = project.wait(3, 60)
        assert [i["status"] for i in infos] == ["COMPLETE"] * 3
        assert all(i["scheduler"]["job_id"] for i in infos)
