"""``metadata/artifacts.json``: which artifact type each logged artifact has, so a reader can
load it without being told, and say which plugin is missing when its type is not installed.
It holds names only, never code: ``{"weights": "numpy"}``, and for a type a plugin
distribution provides, ``{"table": {"type": "csv", "plugin": "csv", "distribution":
"mlx-csv", "version": "1.2"}}``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from mlxpy.rundir import codec, safe
from mlxpy.rundir.atomic import atomic_write_text
from mlxpy.rundir.layout import RunDir


@dataclass(frozen=True)
class ArtifactRecord:
    """What a run records of one artifact: its type's name and, when an installed plugin
    distribution provided the type, which one (to name what is missing on another machine)."""

    type: str
    plugin: str | None = None
    distribution: str | None = None
    version: str | None = None

    def provider(self) -> str:
        """``plugin 'csv' (distribution mlx-csv 1.2)``, or "" for a builtin type."""
        if not self.distribution:
            return ""
        version = f" {self.version}" if self.version else ""
        return f"plugin {self.plugin!r} (distribution {self.distribution}{version})"

    def to_json(self) -> str | dict[str, str]:
        if not self.distribution:
            return self.type
        fields = {"type": self.type, "plugin": self.plugin, "distribution": self.distribution}
        if self.version:
            fields["version"] = self.version
        return {k: v for k, v in fields.items() if v is not None}


def artifact_key(name: str) -> str:
    """The manifest key of an artifact name (``a/./b`` and ``a/b`` are one artifact)."""
    return str(PurePosixPath(name))


def _record(value: Any) -> ArtifactRecord | None:
    if isinstance(value, str):
        return ArtifactRecord(value)
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        extra = {k: value.get(k) for k in ("plugin", "distribution", "version")}
        return ArtifactRecord(value["type"], **{k: v for k, v in extra.items() if type(v) is str})
    return None


def read_artifact_records(run: RunDir) -> dict[str, ArtifactRecord]:
    """The run's ``{artifact name: record}``; empty when it has none or it is unreadable
    (runs written before the manifest existed have none); malformed entries are left out."""
    try:
        data: Any = codec.decode(safe.read_bytes(run.artifacts_manifest, root=run.root))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    records = {k: _record(v) for k, v in data.items() if isinstance(k, str)}
    return {k: v for k, v in records.items() if v is not None}


def write_artifact_records(run: RunDir, records: dict[str, ArtifactRecord]) -> None:
    """Replace the manifest (atomic; rewritten only when an artifact gets a new type)."""
    safe.check_inside(run.root, run.artifacts_manifest)
    data = {name: records[name].to_json() for name in sorted(records)}
    atomic_write_text(run.artifacts_manifest, codec.encode(data).decode())
