"""A launch's search space, read from its overrides (Hydra's sweep grammar) or a YAML file:
the overrides every point shares, and the dimensions the points vary along.

Dimensions keep an override's prefix (``+``/``++``), so a point's override applies the way
the user wrote it. Values are kept as override text (``"0.1"``, ``"'a b'"``), ready to be
put after ``key=``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from mlxpy.errors import ConfigError


@dataclass(frozen=True)
class Choice:
    """``key=a,b,c``, ``key=choice(a,b,c)``, ``key=range(0,3)``: a finite list of values."""

    prefix: str  # "", "+" or "++"
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Interval:
    """``key=interval(a,b)``, ``key=tag(log, interval(a,b))``, ``key=tag(int, ...)``: a
    continuous range, only sampled (random search, an adaptive sweeper), never enumerated."""

    prefix: str
    key: str
    low: float
    high: float
    log: bool = False
    integer: bool = False


Dimension = Choice | Interval


@dataclass
class SearchSpace:
    """``fixed``: overrides every point has (in command-line order, before the varying ones);
    ``dimensions``: what varies, in command-line order."""

    fixed: list[str] = field(default_factory=list)
    dimensions: list[Dimension] = field(default_factory=list)

    @staticmethod
    def override(dimension: Dimension, value: str) -> str:
        return f"{dimension.prefix}{dimension.key}={value}"

    def product(self) -> list[list[str]]:
        """Every combination of the choices, the first dimension varying slowest."""
        self._refuse_intervals("the product of the sweeps")
        lists = [
            [self.override(d, v) for v in d.values]
            for d in self.dimensions
            if isinstance(d, Choice)
        ]
        return [[*self.fixed, *combo] for combo in itertools.product(*lists)]

    def zip(self) -> list[list[str]]:
        """The i-th value of every list together (``+mlxpy.sweep.mode=zip``)."""
        raise ConfigError("+mlxpy.sweep.mode=zip is not available yet")

    def sample(self, count: int, seed: int) -> list[list[str]]:
        """``count`` random points, the same for the same ``seed``."""
        raise ConfigError("+mlxpy.sweep.samples is not available yet")

    def _refuse_intervals(self, what: str) -> None:
        for d in self.dimensions:
            if isinstance(d, Interval):
                raise ConfigError(
                    f"'{d.prefix}{d.key}' is an interval, which {what} cannot enumerate: "
                    "draw random points with +mlxpy.sweep.samples=N (and +mlxpy.sweep.seed=S), "
                    "or search it with an adaptive sweeper (+mlxpy.sweep.name=OptunaSweeper)"
                )


def from_overrides(overrides: list[str]) -> SearchSpace:
    """The space of a command line's overrides (``mlxpy.sweep.*`` already removed)."""
    from hydra.errors import HydraException

    from mlxpy.launching.overrides import parse_overrides

    space = SearchSpace()
    for override in parse_overrides(overrides):
        if not override.is_sweep_override():
            space.fixed.append(override.input_line)
            continue
        text = override.input_line
        element = override.get_key_element()  # with its prefix: "+lr", "db@pkg"
        key = element.lstrip("+")
        prefix = element[: len(element) - len(key)]
        try:
            values = tuple(override.sweep_string_iterator())
        except HydraException as exc:
            raise ConfigError(f"cannot expand the sweep '{text}': {exc}") from exc
        space.dimensions.append(Choice(prefix, key, values))
    return space
