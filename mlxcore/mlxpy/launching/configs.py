"""The user's config directory: default files, and Hydra composition of ``config.yaml``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlxpy.context import Config, as_config
from mlxpy.errors import ConfigError
from mlxpy.launching.options import DEFAULT_OPTIONS_YAML, OPTIONS_FILE, load_yaml_file
from mlxpy.rundir.atomic import create_exclusive
from mlxpy.rundir.flat import MAX_DEPTH, FlattenError, flatten

CONFIG_NAME = "config"
CONFIG_FILE = "config.yaml"
DEFAULT_CONFIG_YAML = "seed: null\n"


def ensure_config_files(config_dir: Path) -> None:
    """Create the config dir, ``config.yaml`` and ``mlxpy.yaml`` when missing (race-safe)."""
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
        create_exclusive(config_dir / CONFIG_FILE, DEFAULT_CONFIG_YAML)
        create_exclusive(config_dir / OPTIONS_FILE, DEFAULT_OPTIONS_YAML)
    except OSError as exc:
        raise ConfigError(f"cannot create the config files in {config_dir}: {exc}") from exc


class Composer:
    """Composes ``config.yaml`` with overrides through Hydra, without Hydra's side effects
    (no output dir, no logging setup, no change of directory)."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self._bases: dict[tuple[str, ...], Any] = {}
        self._stack: contextlib.ExitStack | None = None
        self._in_hydra = False

    def _compose_defaults(self, groups: list[str]) -> Any:
        from hydra import compose

        self._enter_hydra()
        return compose(config_name=CONFIG_NAME, overrides=groups)

    @contextlib.contextmanager
    def session(self) -> Iterator[Composer]:
        """Hydra is initialized on the first composition the cache cannot give (a plain
        launch whose config files did not change since the last one needs none)."""
        with contextlib.ExitStack() as stack:
            self._stack, self._in_hydra = stack, False
            try:
                yield self
            finally:
                self._stack = None

    def _enter_hydra(self) -> None:
        if self._in_hydra:
            return
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        assert self._stack is not None, "compose() is called in a session()"
        config_file = self.config_dir / CONFIG_FILE
        if config_file.exists():  # before Hydra, which would hit a RecursionError on it
            check_depth(load_yaml_file(config_file, "config file"), str(config_file))
        if GlobalHydra.instance().is_initialized():
            GlobalHydra.instance().clear()
        self._stack.enter_context(
            initialize_config_dir(config_dir=str(self.config_dir), version_base=None)
        )
        self._in_hydra = True

    def _base(self, groups: list[str]) -> Any:
        """The composition of the defaults list with ``groups``; without groups, from the
        cache of earlier launches when the config files did not change."""
        if groups:
            return self._compose_defaults(groups)
        from mlxpy.launching import compose_cache

        key = compose_cache.cache_key(self.config_dir)
        kept = compose_cache.load(self.config_dir, key) if key is not None else None
        if kept is not None:
            from omegaconf import OmegaConf

            return OmegaConf.create(kept)
        cfg = self._compose_defaults(groups)
        if key is not None:
            from omegaconf import OmegaConf

            data = OmegaConf.to_container(cfg, resolve=False)
            config_file = self.config_dir / CONFIG_FILE
            raw = load_yaml_file(config_file, "config file") if config_file.exists() else None
            if compose_cache.keepable(data, raw):
                compose_cache.store(self.config_dir, key, data)  # type: ignore[arg-type]
        return cfg

    def compose(
        self,
        groups: list[str],
        values: Sequence[str] = (),
        deletions: Sequence[tuple[str, str]] = (),
    ) -> Config:
        """Hydra composes the defaults list (``groups``) once per distinct choice; the value
        overrides are then applied to a copy with Hydra's own override code, so a sweep of
        hundreds of jobs costs one composition, not hundreds."""
        import copy

        from omegaconf import OmegaConf

        config_file = self.config_dir / CONFIG_FILE
        overrides = [*groups, *values]
        try:
            key = tuple(groups)
            if key not in self._bases:
                self._bases[key] = self._base(groups)
            cfg = copy.deepcopy(self._bases[key])
            _apply_values(values, cfg)
        except RecursionError:
            shown = " ".join(overrides) or "(none)"
            raise ConfigError(
                f"cannot compose {config_file} with the overrides {shown}: the config nests "
                f"too deep; configs nest at most {MAX_DEPTH} levels"
            ) from None
        except Exception as exc:
            if config_file.exists():
                load_yaml_file(config_file, "config file")  # names file and line of bad YAML
            shown = " ".join(overrides) or "(none)"
            raise ConfigError(
                f"cannot compose {config_file} with the overrides {shown}:\n{exc}"
            ) from exc
        for dotted_key, text in deletions:
            _delete(cfg, dotted_key, text, config_file)
        try:
            OmegaConf.resolve(cfg)
        except Exception as exc:
            raise ConfigError(f"cannot resolve an interpolation in {config_file}: {exc}") from exc
        return as_config(cfg)


def check_depth(data: Any, where: str) -> None:
    """Refuse a config nested deeper than ``MAX_DEPTH`` (mappings and lists), without
    recursing, so a pathological file is a ConfigError rather than a RecursionError."""
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            raise ConfigError(f"{where} nests deeper than {MAX_DEPTH} levels, the limit of configs")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)


def check_flat(config: dict[str, Any], where: str) -> None:
    """The config must flatten to dotted keys without loss, as the Reader names them: a dotted
    key beside a nested one of the same name (``a.b`` and ``a: {b}``) is an error."""
    try:
        flatten(config)
    except FlattenError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _apply_values(values: Sequence[str], cfg: Any) -> None:
    if not values:
        return
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides=list(values))
    ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)


def _delete(cfg: Any, key: str, text: str, config_file: Path) -> None:
    from omegaconf import open_dict

    parent_key, _, leaf = key.rpartition(".")
    parent = cfg
    for part in parent_key.split(".") if parent_key else []:
        parent = parent.get(part) if hasattr(parent, "get") else None
    if parent is None or not hasattr(parent, "keys") or leaf not in parent:
        raise ConfigError(f"override '{text}': '{key}' is not in {config_file}, nothing to delete.")
    with open_dict(parent):
        del parent[leaf]
