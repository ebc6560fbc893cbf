"""Command-line arguments: flags, Hydra overrides, sweep expansion, and the split between
the user's config and mlxpy's own options (``mlxpy.*``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxpy.errors import ConfigError

OPTIONS_PREFIX = "mlxpy"
FLAGS_HELP = "--help, -h, --cfg job|mlxpy|all"


@dataclass
class CommandLine:
    overrides: list[str] = field(default_factory=list)
    show_help: bool = False
    show_cfg: str | None = None


@dataclass
class OptionOverride:
    """One ``mlxpy.<path>=value`` override, already parsed."""

    path: list[str]
    value: Any
    kind: str  # change | add | force_add | delete
    text: str


def parse_command_line(argv: list[str]) -> CommandLine:
    line = CommandLine()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("--help", "-h"):
            line.show_help = True
        elif arg == "--cfg" or arg.startswith("--cfg=") or arg == "-c":
            value = arg.partition("=")[2] if "=" in arg else (args.pop(0) if args else "")
            if value not in ("job", "mlxpy", "all"):
                raise ConfigError(f"--cfg takes job, mlxpy or all, got {value!r}.")
            line.show_cfg = value
        elif arg.startswith("-"):
            raise ConfigError(
                f"unknown flag {arg!r}. Flags: {FLAGS_HELP}; the rest are overrides "
                "such as key=value, +key=value, ++key=value, ~key."
            )
        else:
            line.overrides.append(arg)
    return line


def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_overrides(overrides: list[str]) -> list[Any]:
    """Hydra's parse of each override; a syntax error is a ConfigError."""
    if not overrides:  # a plain launch: Hydra's parser is not imported for nothing
        return []
    from hydra.errors import HydraException

    try:
        return _parser().parse_overrides(overrides=overrides)
    except HydraException as exc:
        raise ConfigError(f"invalid override: {exc}") from exc


def expand_sweeps(overrides: list[str]) -> list[list[str]]:
    """Every combination of the sweeps in ``overrides``: ``a=1,2 b=x,y`` gives four jobs."""
    from mlxpy.sweeping.space import from_overrides

    return from_overrides(overrides).product()


SWEEP_PREFIX = f"{OPTIONS_PREFIX}.sweep"


def split_sweep_options(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``(mlxpy.sweep.* overrides, the others)``: the sweep's own options shape the points,
    so they are read before the sweeps are expanded, and are not part of any point."""
    sweep, rest = [], []
    for override, text in zip(parse_overrides(overrides), overrides, strict=True):
        key = override.key_or_group
        if key == SWEEP_PREFIX or key.startswith(SWEEP_PREFIX + "."):
            if override.is_sweep_override():
                raise ConfigError(
                    f"'{text}': a sweep option takes one value, not a sweep; write a list "
                    "in brackets ([a,b]) where the option takes several"
                )
            sweep.append(text)
        else:
            rest.append(text)
    return sweep, rest


def _kind(override: Any) -> str:
    if override.is_delete():
        return "delete"
    if override.is_force_add():
        return "force_add"
    if override.is_add():
        return "add"
    return "change"


@dataclass
class JobOverrides:
    """One job's overrides, sorted by who applies them."""

    hydra: list[str] = field(default_factory=list)  # config groups: change the defaults list
    values: list[str] = field(default_factory=list)  # plain keys: applied after composing
    deletions: list[tuple[str, str]] = field(default_factory=list)  # (key, override text)
    options: list[OptionOverride] = field(default_factory=list)


def split_job(job: list[str], config_dir: Path) -> JobOverrides:
    """Split one job's overrides into Hydra overrides for the user config and mlxpy options.

    ``+key=value`` on a plain key becomes ``++key=value``: it sets the key whether or not the
    config has it (Hydra alone refuses ``+`` on an existing key). Config groups keep ``+``.
    ``~key`` on a plain key is applied by mlxpy after composition, since Hydra refuses to
    delete a key whose value is null.
    """
    split = JobOverrides()
    for override, text in zip(parse_overrides(job), job, strict=True):
        key = override.key_or_group
        if key == OPTIONS_PREFIX or key.startswith(OPTIONS_PREFIX + "."):
            value = None if override.is_delete() else override.value()
            path = [p for p in key.split(".")[1:] if p]
            split.options.append(OptionOverride(path, value, _kind(override), text))
        elif override.package is not None or _is_group(config_dir, key):
            split.hydra.append(text)
        elif override.is_delete():
            split.deletions.append((key, text))
        elif override.is_add():
            split.values.append("+" + text.lstrip())
        else:
            split.values.append(text)
    return split


def _is_group(config_dir: Path, key: str) -> bool:
    return (config_dir / key).is_dir()
