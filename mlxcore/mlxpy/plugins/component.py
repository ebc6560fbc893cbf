"""What loggers, schedulers and version managers have in common: a selection name, and
settings that are the constructor's keyword arguments, validated before construction."""

from __future__ import annotations

import difflib
import inspect
import re
import types
import typing
from abc import ABC
from typing import Any, ClassVar

from mlxpy.errors import OptionsError


class Component(ABC):  # noqa: B024 - subclasses add the abstract methods
    """Base of every selectable implementation.

    ``name`` is what users write in ``mlxpy.yaml``; it defaults to the class name. The
    constructor's keyword arguments (with type hints and defaults) are the settings allowed
    next to ``name`` in the block.
    """

    name: ClassVar[str] = ""
    role: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    @classmethod
    def settings_schema(cls) -> dict[str, tuple[Any, Any]]:
        """``{setting: (type hint, default)}`` read from the constructor; a ``**kwargs``
        constructor also accepts its base class's settings (it passes them on)."""
        schema: dict[str, tuple[Any, Any]] = {}
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            try:
                hints = typing.get_type_hints(init)
            except Exception:  # unresolvable hints: accept any type rather than fail
                hints = {}
            passes_on = False
            for param in inspect.signature(init).parameters.values():
                if param.kind is param.VAR_KEYWORD:
                    passes_on = True
                elif param.name != "self" and param.kind is not param.VAR_POSITIONAL:
                    schema.setdefault(param.name, (hints.get(param.name, Any), param.default))
            if not passes_on:
                break
        return schema


def type_matches(value: Any, hint: Any) -> bool:
    """Whether a YAML-loaded value fits a type hint (bool is not an int, an int is a float)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(type_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(hint)
        return not args or all(type_matches(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def build_component(cls: type[Component], role: str, settings: dict[str, Any], where: Any) -> Any:
    """Validate ``settings`` against ``cls``'s constructor, then construct it.

    ``where(key)`` tells where a setting came from (file or override) for error messages.
    """
    schema = check_settings(cls, role, settings, where)
    missing = [
        k
        for k, (_, default) in schema.items()
        if default is inspect.Parameter.empty and k not in settings
    ]
    if missing:
        raise OptionsError(
            f"{role} '{cls.name}' needs the option(s) {', '.join(f'{role}.{k}' for k in missing)} "
            f"({where(None)})."
        )
    try:
        return cls(**settings)
    except (ValueError, TypeError) as exc:  # it refused a value: a setup error, not a traceback
        named = [k for k in settings if re.search(rf"\b{re.escape(k)}\b", str(exc))]
        given = "; ".join(f"{role}.{k}={settings[k]!r} ({where(k)})" for k in named or settings)
        raise OptionsError(
            f"{role} '{cls.name}' refused its options ({given or where(None)}): {exc}"
        ) from exc


def check_settings(
    cls: type[Component], role: str, settings: dict[str, Any], where: Any
) -> dict[str, tuple[Any, Any]]:
    """Refuse an unknown key (naming the closest valid one) or a wrong type; also used on a
    disabled block, so a typo is found before the block is switched on. Returns the schema."""
    schema = cls.settings_schema()
    for key, value in settings.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" Did you mean '{role}.{close[0]}'?" if close else ""
            valid = ", ".join(["name", *schema]) or "name"
            raise OptionsError(
                f"Unknown option '{role}.{key}' for {role} '{cls.name}' ({where(key)}).{hint} "
                f"Valid keys of '{role}': {valid}."
            )
        hint_type, _ = schema[key]
        if not type_matches(value, hint_type):
            raise OptionsError(
                f"Option '{role}.{key}' ({where(key)}) must be of type {type_name(hint_type)}, "
                f"got {value!r} ({type(value).__name__})."
            )
    return schema
