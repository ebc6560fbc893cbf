"""The builtin LocalScheduler passes the same conformance suite as the cluster plugins."""

from __future__ import annotations

import time

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
