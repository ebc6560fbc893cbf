"""Schedulers submit jobs to a cluster; the base class holds the options every one shares."""

from __future__ import annotations

from typing import Any

from mlxpy.component import Component
from mlxpy.errors import MlxpyError


class Scheduler(Component):
    """Base of job schedulers; ``scheduler.name: Scheduler`` selects it (it cannot submit).

    Cluster schedulers (``SLURMScheduler``, ``OARScheduler``) come as separate plugins.
    """

    role = "scheduler"
    name = "Scheduler"

    def __init__(
        self,
        shell_path: str = "",
        shell_config_cmd: str = "",
        env_cmd: str = "",
        cleanup_cmd: str = "",
        option_cmd: list[str] | None = None,
    ) -> None:
        self.shell_path = shell_path or "/bin/bash"
        self.shell_config_cmd = shell_config_cmd
        self.env_cmd = env_cmd
        self.cleanup_cmd = cleanup_cmd
        self.option_cmd = list(option_cmd or [])

    def submit(self, script_path: str) -> Any:
        raise MlxpyError(
            f"scheduler '{self.name}' cannot submit jobs. Set scheduler.name in mlxpy.yaml to a "
            "cluster scheduler (e.g. SLURMScheduler from 'pip install mlxpy-slurm'), or "
            "use_scheduler: false."
        )
