"""Nested mappings as dotted keys, as the Reader's columns and the query language name them."""

from __future__ import annotations

from typing import Any

from mlxpy.errors import MlxpyError

#: configs and run info nest no deeper than this; deeper is refused (not a RecursionError)
MAX_DEPTH = 64


class FlattenError(MlxpyError, ValueError):
    """Two keys flatten to the same dotted name, or the mapping nests too deep."""


def flatten(data: Any, prefix: str = "", max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``. An empty mapping stays a value (``{}``), so
    nothing is lost; a dotted key that collides with a nested one (``a.b`` beside ``a: {b}``)
    is a :class:`FlattenError`, never a silent overwrite."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    _flatten_into(flat, data, prefix, 0, max_depth)
    return flat


def _flatten_into(
    flat: dict[str, Any], mapping: dict[Any, Any], base: str, depth: int, max_depth: int
) -> None:
    if depth >= max_depth:  # bounded, so the recursion below never nears Python's limit
        raise FlattenError(f"{base or 'the mapping'} nests deeper than {max_depth} levels")
    for key, value in mapping.items():
        name = f"{base}.{key}" if base else str(key)
        if isinstance(value, dict) and value:
            _flatten_into(flat, value, name, depth + 1, max_depth)
        elif name in flat:
            raise FlattenError(_collision(name))
        else:
            flat[name] = value


def _collision(name: str) -> str:
    return (
        f"two keys named {name!r} collide once nested keys are joined with '.' (a dotted key "
        "beside a nested mapping of the same name); rename one of them"
    )
