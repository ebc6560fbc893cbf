"""Import paths of modules that moved into subsystem packages keep working, with a
``DeprecationWarning``: ``import mlxpy.reader`` gives :mod:`mlxpy.reading.reader` itself (one
module object, so classes, ``isinstance`` and dotted class paths in ``mlxpy.yaml`` agree)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

#: old module path -> its home since 0.2
MOVED: dict[str, str] = {
    "mlxpy.artifacts": "mlxpy.rundir.artifacts",
    "mlxpy.component": "mlxpy.plugins.component",
    "mlxpy.configs": "mlxpy.launching.configs",
    "mlxpy.git_snapshot": "mlxpy.versioning.git_snapshot",
    "mlxpy.index": "mlxpy.reading.index",
    "mlxpy.job_script": "mlxpy.scheduling.job_script",
    "mlxpy.job_status": "mlxpy.scheduling.status",
    "mlxpy.launcher": "mlxpy.launching.launcher",
    "mlxpy.local_scheduler": "mlxpy.scheduling.local",
    "mlxpy.options": "mlxpy.launching.options",
    "mlxpy.overrides": "mlxpy.launching.overrides",
    "mlxpy.plotting": "mlxpy.reading.plotting",
    "mlxpy.prompts": "mlxpy.versioning.prompts",
    "mlxpy.query": "mlxpy.reading.query",
    "mlxpy.reader": "mlxpy.reading.reader",
    "mlxpy.run_info": "mlxpy.rundir.info",
    "mlxpy.runner": "mlxpy.launching.runner",
    "mlxpy.runs_accessor": "mlxpy.reading.accessor",
    "mlxpy.scheduler": "mlxpy.scheduling.base",
    "mlxpy.snapshot_launch": "mlxpy.launching.relaunch",
    "mlxpy.streams": "mlxpy.rundir.streams",
    "mlxpy.submission": "mlxpy.scheduling.submission",
    "mlxpy.version_manager": "mlxpy.versioning.base",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}: import from there, or from mlxpy",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new)
        self._spec = module.__spec__  # the import system sets the alias's spec on it
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
