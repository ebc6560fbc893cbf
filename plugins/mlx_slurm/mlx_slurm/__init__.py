"""SLURM support for mlxpy (``scheduler.name: SLURMScheduler``)."""

from mlx_slurm.scheduler import SLURMScheduler

__all__ = ["SLURMScheduler"]
__version__ = "0.2.0"
