"""OAR support for mlxpy (``scheduler.name: OARScheduler``)."""

__version__ = "0.2.0"
