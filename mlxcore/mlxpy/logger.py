"""The logger role's public home: :class:`Logger` (what the core calls on any logger) and the
builtin :class:`DefaultLogger`, whose files :mod:`mlxpy.rundir` specifies. Both are defined in
:mod:`mlxpy.rundir.logger` and named from here (``mlxpy.logger.DefaultLogger`` is the dotted
path users write and see)."""

from mlxpy.rundir.logger import ConfigChangedWarning, DefaultLogger, Logger, MetricsWriteWarning

__all__ = ["ConfigChangedWarning", "DefaultLogger", "Logger", "MetricsWriteWarning"]
