"""Plugins: discovery through entry points, the builtins, isolation of broken plugins, and
selection of implementations by name (:mod:`mlxpy.plugins.registry`); the settings every
implementation shares (:mod:`mlxpy.plugins.component`)."""

from mlxpy.plugins.registry import (
    ENTRY_POINT_GROUP,
    ROLES,
    PluginLoadWarning,
    PluginRecord,
    PluginRegistry,
    get_plugins,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ROLES",
    "PluginLoadWarning",
    "PluginRecord",
    "PluginRegistry",
    "get_plugins",
]
