"""Plugin discovery (entry-point group ``mlxpy``), isolation of broken plugins, and selection
of implementations by name.

The core's builtins (:data:`mlxpy.plugins.builtins.BUILTIN_PLUGINS`) are modules registered
through the same call as a third-party plugin's, before the entry points are loaded.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mlxpy.errors import MlxpyWarning, PluginError, UnknownPluginError
from mlxpy.hookspecs import PROJECT_NAME, SPEC_CLASSES

ENTRY_POINT_GROUP = "mlxpy"

# role -> (registration hook, dotted path of the role's base class)
ROLES: dict[str, tuple[str, str]] = {
    "logger": ("mlxpy_register_loggers", "mlxpy.logger.Logger"),
    "scheduler": ("mlxpy_register_schedulers", "mlxpy.scheduling.base.Scheduler"),
    "version_manager": ("mlxpy_register_version_managers", "mlxpy.versioning.base.VersionManager"),
    "sweeper": ("mlxpy_register_sweepers", "mlxpy.sweeping.sweeper.Sweeper"),
}


class PluginLoadWarning(MlxpyWarning):
    """An installed plugin could not be loaded; mlxpy goes on without it."""


@dataclass
class PluginRecord:
    """What mlxpy knows about one plugin: where it comes from and whether it works."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: str = "active"
    error: str | None = None
    provides: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)

    def label(self) -> str:
        if self.distribution:
            return f"'{self.name}' ({self.distribution} {self.version})"
        return f"'{self.name}'"


def _import_object(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


_IMPL_MARKER = f"{PROJECT_NAME}_impl"  # the attribute @hookimpl sets on what it marks
_implements_hooks: dict[type, bool] = {}


def implements_hooks(cls: type) -> bool:
    """Whether ``cls`` has ``@hookimpl`` methods (cached per class: a selected instance whose
    class has none is not registered, which keeps a sweep's per-job cost at a lookup)."""
    found = _implements_hooks.get(cls)
    if found is None:
        found = any(
            getattr(inspect.getattr_static(cls, attr), _IMPL_MARKER, None) is not None
            for attr in dir(cls)
        )
        _implements_hooks[cls] = found
    return found


class PluginRegistry:
    """A pluggy manager plus the records and class registries built from its plugins."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        for spec in SPEC_CLASSES:
            self.pm.add_hookspecs(spec)
        self.records: dict[str, PluginRecord] = {}
        self._classes: dict[str, dict[str, list[tuple[type, str]]]] | None = None
        self.load_builtins()
        if load_entry_points:
            self.load_entry_points()

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # -- registration -------------------------------------------------------------------
    def load_builtins(self) -> None:
        """Register the core's builtin modules (a failure here is a bug: it raises)."""
        from mlxpy._version import __version__
        from mlxpy.plugins.builtins import BUILTIN_PLUGINS

        for module in BUILTIN_PLUGINS:
            record = PluginRecord(name=module, distribution="mlxpy", version=__version__)
            self._register(importlib.import_module(module), record)

    def load_entry_points(self, entry_points: Any = None) -> None:
        """Load and register every entry point, each in isolation: one broken plugin is a
        warning and a ``failed`` record, never a crash."""
        if entry_points is None:  # the declared backport, the same API on every Python
            import importlib_metadata

            entry_points = importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in entry_points:
            dist = getattr(ep, "dist", None)
            if dist is not None and dist.metadata["Name"] == PROJECT_NAME:
                continue  # the builtins, registered by load_builtins (older installs list them)
            record = PluginRecord(
                name=ep.name,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            if ep.name in self.records:
                record.name = f"{record.distribution}:{ep.name}"
            try:
                self._register(ep.load(), record)
            except Exception as exc:  # isolate any failure of third-party code
                record.status = "failed"
                record.error = f"{type(exc).__name__}: {exc}"
                self.records[record.name] = record
                warnings.warn(
                    f"mlxpy plugin {record.label()} failed to load and is skipped: {record.error}",
                    PluginLoadWarning,
                    stacklevel=2,
                )
        self.pm.check_pending()

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register an in-process plugin (a module or an object with ``@hookimpl`` methods).

        Raises :class:`PluginError` if it implements a hook that does not exist.
        """
        name = name or getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin)}"
        self._register(plugin, PluginRecord(name=name))
        return name

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.records.pop(name, None)
        self._classes = None

    @contextlib.contextmanager
    def selected(self, *instances: Any) -> Iterator[None]:
        """Register the selected logger, scheduler or version manager instances (None ones
        are skipped) for the block's duration, so their ``@hookimpl`` methods fire with the
        broadcast hooks; unregister them after. One already registered is left as it is.

        Raises :class:`PluginError` if a class implements a hook that does not exist.
        """
        names = []
        try:
            for instance in instances:
                if instance is None or not implements_hooks(type(instance)):
                    continue
                if self.pm.is_registered(instance):
                    continue
                name = f"selected {type(instance).__name__} ({id(instance):#x})"
                self._register(instance, PluginRecord(name=name))
                names.append(name)
            yield
        finally:
            for name in reversed(names):
                self.unregister(name)

    def _register(self, plugin: Any, record: PluginRecord) -> None:
        try:
            self.pm.register(plugin, name=record.name)
        except ValueError as exc:
            raise PluginError(f"plugin {record.label()}: {exc}") from exc
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {record.label()}: {exc}") from exc
        callers = self.pm.get_hookcallers(plugin) or []
        unknown = sorted(c.name for c in callers if c.spec is None)
        if unknown:
            self.pm.unregister(plugin)
            known = [n for n, c in vars(self.pm.hook).items() if getattr(c, "spec", None)]
            hints = []
            for bad in unknown:
                close = difflib.get_close_matches(bad, known, n=1)
                hints.append(f"'{bad}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise PluginError(
                f"plugin {record.label()} implements unknown hook(s) {', '.join(hints)}. "
                "Hooks are listed in mlxpy.hookspecs."
            )
        record.hooks = sorted(c.name for c in callers)
        self.records[record.name] = record
        self._classes = None

    # -- class registries ---------------------------------------------------------------
    def _registries(self) -> dict[str, dict[str, list[tuple[type, str]]]]:
        if self._classes is not None:
            return self._classes
        classes: dict[str, dict[str, list[tuple[type, str]]]] = {role: {} for role in ROLES}
        for known in self.records.values():
            known.provides = []
        hook = self.pm.hook
        implementations = {  # each is called on its own, so one that raises fails alone
            "logger": hook.mlxpy_register_loggers.get_hookimpls(),
            "scheduler": hook.mlxpy_register_schedulers.get_hookimpls(),
            "version_manager": hook.mlxpy_register_version_managers.get_hookimpls(),
            "sweeper": hook.mlxpy_register_sweepers.get_hookimpls(),
        }
        for role, (hook_name, _) in ROLES.items():
            for plugin_name, record, provided in self._answers(hook_name, implementations[role]):
                for cls in provided:
                    cls_name = getattr(cls, "name", None) or cls.__name__
                    classes[role].setdefault(cls_name, []).append((cls, plugin_name))
                    if record is not None:
                        record.provides.append(f"{role}:{cls_name}")
        self._classes = classes
        return classes

    def classes(self, role: str) -> list[type]:
        """Every registered class of ``role``, first provider of each name, by name."""
        return [providers[0][0] for _, providers in sorted(self._registries()[role].items())]

    def available(self, role: str) -> list[str]:
        return sorted(self._registries()[role])

    def resolve(self, role: str, name: str, where: str = "") -> type:
        """The class selected by ``name`` (a registered name or a full dotted class path)."""
        where_txt = f" ({where})" if where else ""
        base = _import_object(ROLES[role][1])
        providers = self._registries()[role].get(name)
        if providers:
            if len(providers) > 1:
                owners = " and ".join(f"'{p}'" for _, p in providers)
                raise PluginError(
                    f"{role} name '{name}'{where_txt} is provided by several plugins: {owners}. "
                    "Uninstall one, or select the class by its full dotted path."
                )
            return providers[0][0]
        if "." in name:
            try:
                cls = _import_object(name)
            except (ImportError, AttributeError) as exc:
                raise UnknownPluginError(
                    f"cannot import {role} class '{name}'{where_txt}: {exc}"
                ) from exc
            if not (inspect.isclass(cls) and issubclass(cls, base)):
                raise PluginError(
                    f"'{name}'{where_txt} must be a subclass of {base.__module__}.{base.__name__}"
                )
            return cls
        raise UnknownPluginError(self._unknown_message(role, name, where_txt))

    def _unknown_message(self, role: str, name: str, where_txt: str) -> str:
        names = self.available(role)
        lines = [f"Unknown {role} '{name}'{where_txt}."]
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            lines.append(f"Did you mean '{close[0]}'?")
        for other in ROLES:
            lines.append(f"Available {other}s: {', '.join(self.available(other)) or '(none)'}.")
        failed = [r for r in self.records.values() if r.status == "failed"]
        for record in failed:
            lines.append(
                f"The plugin {record.label()} is installed but failed to load: {record.error}"
            )
        lines.append("Install the plugin that provides it, or give a full dotted class path.")
        return "\n".join(lines)

    def artifact_types(self) -> dict[str, tuple[Any, PluginRecord | None]]:
        """Every artifact type the registered plugins provide, by name, with the record of
        the plugin that provides it (for a shared name, the one pluggy calls first wins)."""
        types: dict[str, tuple[Any, PluginRecord | None]] = {}
        implementations = self.pm.hook.mlxpy_register_artifact_types.get_hookimpls()
        answers = self._answers("mlxpy_register_artifact_types", implementations)
        for _, record, provided in reversed(answers):  # pluggy calls the last registered first
            for kind in provided:
                types.setdefault(kind.name, (kind, record))
        return types

    def _answers(
        self, hook_name: str, implementations: list[Any]
    ) -> list[tuple[str, PluginRecord | None, list[Any]]]:
        """Each plugin's answer to a registration hook, in registration order: ``(plugin
        name, its record, what it returned)``. A plugin whose hook raises is recorded as
        failed and left out, so one broken plugin never hides the others."""
        answers = []
        for impl in implementations:
            record = self.records.get(impl.plugin_name)
            try:
                provided = list(impl.function() or [])
            except Exception as exc:  # isolate any failure of third-party code
                if record is not None:
                    record.status = "failed"
                    record.error = f"{hook_name}() raised {type(exc).__name__}: {exc}"
                continue
            answers.append((impl.plugin_name, record, provided))
        return answers

    # -- reporting ----------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        self._registries()
        return [
            {
                "name": r.name,
                "distribution": r.distribution,
                "version": r.version,
                "status": r.status if r.status == "active" else f"failed: {r.error}",
                "provides": list(r.provides),
                "hooks": list(r.hooks),
            }
            for r in self.records.values()
        ]

    def versions(self) -> dict[str, str]:
        """``{distribution: version}`` of the loaded plugins, for each run's metadata."""
        return {
            r.distribution: r.version
            for r in self.records.values()
            if r.distribution and r.version and r.status == "active"
        }


_default: PluginRegistry | None = None


def get_plugins() -> PluginRegistry:
    """The process-wide registry, built on first use (never at ``import mlxpy``)."""
    global _default
    if _default is None:
        _default = PluginRegistry()
    return _default
