"""Version managers freeze the code a job runs; :class:`GitVM` is the builtin one."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from mlxpy.component import Component
from mlxpy.errors import MlxpyError


class VersionManager(Component):
    """Base of version managers, selected by ``version_manager.name`` in ``mlxpy.yaml``."""

    role = "version_manager"

    @abstractmethod
    def make_working_directory(self) -> str:
        """Return the directory holding the frozen code the job must run from."""

    def get_info(self) -> dict[str, Any]:
        """What to record in the run's info about the code version."""
        return {}


class GitVM(VersionManager):
    """Runs jobs from a snapshot of the latest git commit."""

    name = "GitVM"

    def __init__(
        self,
        parent_target_work_dir: str = "./.workdir",
        skip_requirements: bool = False,
        interactive_mode: bool = True,
    ) -> None:
        self.parent_target_work_dir = parent_target_work_dir
        self.skip_requirements = skip_requirements
        self.interactive_mode = interactive_mode

    def make_working_directory(self) -> str:
        raise MlxpyError(
            "GitVM snapshots are not available in this version of mlxpy; "
            "set use_version_manager: false in mlxpy.yaml."
        )
