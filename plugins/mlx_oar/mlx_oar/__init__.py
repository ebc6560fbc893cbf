"""OAR support for mlxpy (``scheduler.name: OARScheduler``)."""

__version__ = "0.1.0"
