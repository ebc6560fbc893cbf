"""Artifact types (how an object is saved and loaded) and their atomic storage in a run dir."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlxpy.errors import MlxpyError
from mlxpy.rundir.atomic import atomic_write
from mlxpy.rundir.layout import ARTIFACTS_DIR
from mlxpy.rundir.safe import check_inside

#: one path component of an artifact name (file systems take 255 bytes; temp names add 20)
MAX_NAME_BYTES = 200
#: types whose loading runs code from the file (unpickling; ``torch.load`` of a full model):
#: loaded only when asked for by name, never chosen by an untyped load
EXPLICIT_TYPES = frozenset({"pickle", "torch"})


class ExplicitTypeError(MlxpyError, LookupError):
    """An artifact exists only as a type that is loaded when asked for by name (a pickle)."""


@dataclass(frozen=True)
class ArtifactType:
    """How to store one kind of object: ``save(obj, path)`` and ``load(path)``, and the file
    extension (kept on the temp file too, for libraries that look at it)."""

    name: str
    save: Callable[[Any, str], Any]
    load: Callable[[str], Any]
    extension: str = ""


def _save_pickle(obj: Any, path: str) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _load_pickle(path: str) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _save_json(obj: Any, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)


def _load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _save_yaml(obj: Any, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(obj, fh, sort_keys=False)


def _load_yaml(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _save_text(obj: Any, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(obj if isinstance(obj, str) else str(obj))


def _load_text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _save_numpy(obj: Any, path: str) -> None:
    import numpy as np

    with open(path, "wb") as fh:  # a file handle: numpy cannot rename it
        np.save(fh, obj, allow_pickle=False)


def _load_numpy(path: str) -> Any:
    import numpy as np

    return np.load(path, allow_pickle=False)


def _save_torch(obj: Any, path: str) -> None:
    import torch

    torch.save(obj, path)


def _load_torch(path: str) -> Any:
    import torch

    return torch.load(path, weights_only=False)


def _save_image(obj: Any, path: str) -> None:
    if hasattr(obj, "savefig"):  # a matplotlib figure
        obj.savefig(path, format="png")
    elif hasattr(obj, "save") and hasattr(obj, "mode"):  # a PIL image
        obj.save(path, format="PNG")
    else:
        raise TypeError(
            f"an 'image' artifact must be a matplotlib figure or a PIL image, got "
            f"{type(obj).__name__}"
        )


def _load_image(path: str) -> Any:
    try:
        from PIL import Image
    except ImportError:
        import matplotlib.image

        return matplotlib.image.imread(path)
    with Image.open(path) as image:
        image.load()
        return image.copy()


BUILTIN_ARTIFACT_TYPES = (
    ArtifactType("pickle", _save_pickle, _load_pickle, ".pkl"),
    ArtifactType("json", _save_json, _load_json, ".json"),
    ArtifactType("yaml", _save_yaml, _load_yaml, ".yaml"),
    ArtifactType("text", _save_text, _load_text, ".txt"),
    ArtifactType("numpy", _save_numpy, _load_numpy, ".npy"),
    ArtifactType("torch", _save_torch, _load_torch, ".pt"),
    ArtifactType("image", _save_image, _load_image, ".png"),
)


def safe_relative_path(base: Path, name: str, extension: str) -> Path:
    """``base/name[extension]``; names may hold sub-dirs but never leave ``base``."""
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")) or "\x00" in name:
        raise ValueError(f"invalid artifact name {name!r}: give a relative path such as 'a/b'")
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        raise ValueError(f"invalid artifact name {name!r}: no newlines or control characters")
    if len(name) > 1000 or any(len(part.encode()) > MAX_NAME_BYTES for part in name.split("/")):
        raise ValueError(
            f"invalid artifact name {name[:40]!r}...: each part at most {MAX_NAME_BYTES} bytes"
        )
    parts = Path(name).parts
    if any(part in ("..", ".") for part in parts):
        raise ValueError(f"invalid artifact name {name!r}: '..' and '.' are not allowed")
    if extension and not name.endswith(extension):
        name += extension
    # no resolve(): it raises on a symlink loop (Python < 3.13); links are refused by
    # artifact_path, and the checks above keep the name itself inside ``base``
    return base / name


def artifact_path(root: Path, base: Path, name: str, extension: str) -> Path:
    """:func:`safe_relative_path`, refusing a symbolic link anywhere below the run dir
    ``root`` (a planted link must not lead a write or a read outside the run)."""
    try:
        path = safe_relative_path(base, name, extension)
    except ValueError:
        if isinstance(name, str) and not Path(name).is_absolute() and ".." not in name:
            check_inside(root, base / name)  # a link is why it leaves: say so
        raise
    check_inside(root, path)
    return path


def find_artifact(
    root: Path, name: str, kinds: list[ArtifactType], typed: bool
) -> tuple[ArtifactType, Path] | None:
    """The first of ``kinds`` holding artifact ``name`` in run dir ``root``, None if none.
    Untyped (``typed`` False), an :data:`EXPLICIT_TYPES` type is never chosen: when it is
    the only one found, :class:`ExplicitTypeError` says how to ask for it."""
    passed = None
    for kind in kinds:
        path = artifact_path(root, root / ARTIFACTS_DIR / kind.name, name, kind.extension)
        if path.is_file():
            if typed or kind.name not in EXPLICIT_TYPES:
                return kind, path
            passed = passed or (kind, path)
    if passed is not None:
        kind, path = passed
        raise ExplicitTypeError(
            f"artifact {name!r} exists only as {kind.name} ({path}); loading a {kind.name} "
            f"runs code from the file, so it is never chosen for you: pass "
            f'artifact_type="{kind.name}" to load it'
        )
    return None


def atomic_save(kind: ArtifactType, obj: Any, path: Path) -> None:
    """Save through a temp file with the final extension in the same dir, fsync, rename (and
    fsync the dir, so the rename survives a crash): a reader, or a killed writer, never leaves
    a half-written file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: kind.save(obj, tmp), fsync=True, sync_dir=True)
