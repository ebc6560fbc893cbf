"""``metadata/artifacts.json``: which artifact type each logged artifact has, so a reader can
load it without being told, and say which plugin is missing when its type is not installed.
It holds names only (``{"weights": "numpy"}``), never code."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from mlxpy.rundir import codec, safe
from mlxpy.rundir.atomic import atomic_write_text
from mlxpy.rundir.layout import RunDir


def artifact_key(name: str) -> str:
    """The manifest key of an artifact name (``a/./b`` and ``a/b`` are one artifact)."""
    return str(PurePosixPath(name))


def read_artifact_types(run: RunDir) -> dict[str, str]:
    """The run's ``{artifact name: type name}``; empty when it has none or it is unreadable
    (runs written before the manifest existed have none)."""
    try:
        data: Any = codec.decode(safe.read_bytes(run.artifacts_manifest, root=run.root))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def write_artifact_types(run: RunDir, types: dict[str, str]) -> None:
    """Replace the manifest (atomic; rewritten only when an artifact gets a new type)."""
    safe.check_inside(run.root, run.artifacts_manifest)
    atomic_write_text(run.artifacts_manifest, codec.encode(dict(sorted(types.items()))).decode())
