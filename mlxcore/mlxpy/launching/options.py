"""``mlxpy.yaml``: the framework's own options, their defaults, overrides and validation."""

from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlxpy.errors import ConfigError, OptionsError
from mlxpy.rundir.flat import MAX_DEPTH

OPTIONS_FILE = "mlxpy.yaml"

# Written verbatim when mlxpy.yaml is missing: the defaults of the Getting-started page.
DEFAULT_OPTIONS_YAML = """\
logger:
  name: DefaultLogger
  parent_log_dir: ./logs
  forced_log_id: -1
  log_streams_to_file: false
scheduler:
  name: Scheduler
  shell_path: ''
  shell_config_cmd: ''
  env_cmd: ''
  cleanup_cmd: ''
  option_cmd: []
version_manager:
  name: GitVM
  parent_target_work_dir: ./.workdir
  skip_requirements: false
  interactive_mode: true
use_version_manager: false
use_scheduler: false
use_logger: true
"""

DEFAULT_OPTIONS: dict[str, Any] = yaml.safe_load(DEFAULT_OPTIONS_YAML)
# a sweep's options: not written into a new mlxpy.yaml (the file above is the documented
# default), yet always there, so +mlxpy.sweep.<option>=... adds to it
DEFAULT_OPTIONS["sweep"] = {"name": "BasicSweeper"}
ROLE_KEYS = ("logger", "scheduler", "version_manager", "sweep")
SWITCHES = {
    "logger": "use_logger",
    "scheduler": "use_scheduler",
    "version_manager": "use_version_manager",
}


def load_yaml_file(path: Path, what: str) -> Any:
    """Parse a YAML file; a syntax error names the file and line, too deep a nesting is a
    ConfigError, not a RecursionError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    try:
        return yaml.safe_load(text)
    except RecursionError:  # the parser recurses once per level
        raise ConfigError(
            f"{path} nests too deep to be read; configs nest at most {MAX_DEPTH} levels"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"malformed YAML in {path}{line}: {problem}") from exc


@dataclass
class Options:
    """The effective options of one job, and where each value came from."""

    data: dict[str, Any]
    source: str = "defaults"
    origins: dict[str, str] = field(default_factory=dict)

    def where(self, dotted_key: str | None) -> str:
        if dotted_key is not None:
            for key, origin in self.origins.items():
                if dotted_key == key or dotted_key.startswith(key + "."):
                    return origin
        return self.source

    def block(self, role: str) -> dict[str, Any]:
        return dict(self.data[role])

    def enabled(self, role: str) -> bool:
        return bool(self.data[SWITCHES[role]])

    def settings_where(self, role: str):
        return lambda key: self.where(f"{role}.{key}" if key else role)


#: ``{path: ((mtime_ns, size), parsed)}``: a sweep's launch reads mlxpy.yaml once per point
_read_cache: dict[str, tuple[tuple[int, int], Any]] = {}


def _load_options_file(path: Path) -> Any:
    """The parsed file, parsed again only when it changed (a copy: callers change it)."""
    try:
        stat = os.stat(path)
    except OSError:
        return load_yaml_file(path, "options file")  # which says why it cannot be read
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _read_cache.get(str(path))
    if cached is None or cached[0] != key:
        cached = (key, load_yaml_file(path, "options file"))
        _read_cache[str(path)] = cached
    return copy.deepcopy(cached[1])


def read_options(path: Path, display: str | None = None) -> Options:
    """Read ``mlxpy.yaml`` and fill missing top-level keys with their defaults."""
    raw = _load_options_file(path)
    display = display or str(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise OptionsError(f"{display} must hold a mapping of options, got {type(raw).__name__}.")
    data: dict[str, Any] = {}
    for key, default in DEFAULT_OPTIONS.items():
        value = raw[key] if key in raw else copy.deepcopy(default)  # overrides change it
        if key in ROLE_KEYS and isinstance(value, dict) and "name" not in value:
            value = {"name": default["name"], **value}
        data[key] = value
    for key in raw:
        if key not in DEFAULT_OPTIONS:
            data[key] = raw[key]  # kept so that validation reports it
    return Options(data=data, source=display)


def apply_override(options: Options, path: list[str], value: Any, kind: str, text: str) -> None:
    """Apply one ``mlxpy.*`` override. ``kind`` is 'change', 'add', 'force_add' or 'delete'."""
    if not path:
        raise OptionsError(f"override '{text}' names no option: write mlxpy.<option>=<value>.")
    node: Any = options.data
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
            raise OptionsError(
                f"override '{text}': '{part}' is not an option group of {options.source}. "
                f"Groups: {', '.join(ROLE_KEYS)}."
            )
        node = node[part]
    last = path[-1]
    dotted = ".".join(path)
    if kind == "delete":
        if last not in node:
            raise OptionsError(f"override '{text}': there is no option '{dotted}' to delete.")
        del node[last]
        if len(path) == 1 and last in DEFAULT_OPTIONS:
            node[last] = DEFAULT_OPTIONS[last]
    else:
        if isinstance(value, dict) and last in ROLE_KEYS and len(path) == 1:
            value = {"name": node.get(last, {}).get("name"), **value}
        node[last] = value
    options.origins[dotted] = f"override '{text}'"


def validate_top_level(options: Options) -> None:
    """Check top-level keys and switches; blocks are checked against their selected class."""
    valid = list(DEFAULT_OPTIONS)
    for key, value in options.data.items():
        if key not in DEFAULT_OPTIONS:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise OptionsError(
                f"Unknown option '{key}' ({options.where(key)}).{hint} "
                f"Valid options: {', '.join(valid)}."
            )
        if key in SWITCHES.values() and not isinstance(value, bool):
            raise OptionsError(
                f"Option '{key}' ({options.where(key)}) must be true or false, got {value!r}."
            )
        if key in ROLE_KEYS:
            if not isinstance(value, dict):
                raise OptionsError(
                    f"Option '{key}' ({options.where(key)}) must be a mapping with a 'name' key, "
                    f"got {value!r}."
                )
            if not isinstance(value.get("name"), str) or not value["name"]:
                raise OptionsError(
                    f"Option '{key}.name' ({options.where(key + '.name')}) must be a class name "
                    f"such as '{DEFAULT_OPTIONS[key]['name']}' or a full dotted class path."
                )
