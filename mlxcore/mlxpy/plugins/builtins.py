"""The core's builtin implementations: modules that each hold a role's classes and, beside
them, the ``@hookimpl`` that registers them, exactly as a third-party ``plugin.py`` would.
They are registered from this tuple (as pytest's ``default_plugins``), so a source checkout
works without being installed."""

from __future__ import annotations

BUILTIN_PLUGINS: tuple[str, ...] = (
    "mlxpy.rundir.logger",
    "mlxpy.scheduling.local",
    "mlxpy.versioning.base",
    "mlxpy.sweeping.sweeper",
)
