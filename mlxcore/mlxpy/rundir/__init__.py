"""The run directory: its layout, statuses, run info, metric logs and the safe ways to write
and read them. Every other module goes through this package; ``docs/run-directory.md`` is its
specification. It imports nothing heavy (no pandas, no git), so launching stays light."""

from mlxpy.rundir.layout import FORMAT_VERSION, RunDir, is_run_id
from mlxpy.rundir.status import RunStatus

__all__ = ["FORMAT_VERSION", "RunDir", "RunStatus", "is_run_id"]
