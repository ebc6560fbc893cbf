"""A launch's search space, read from its overrides (Hydra's sweep grammar) or a YAML file:
the overrides every point shares, and the dimensions the points vary along.

Dimensions keep an override's prefix (``+``/``++``), so a point's override applies the way
the user wrote it. Values are kept as override text (``"0.1"``, ``"'a b'"``), ready to be
put after ``key=``.

Random draws use :class:`random.Random` seeded with the sweep's seed and only its
``random()`` (the Mersenne Twister's floats, the same on every machine and Python version),
so the same seed gives the same points everywhere.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxpy.errors import ConfigError

#: significant digits a drawn float keeps: short override texts, and a value that does not
#: depend on the last bit of the platform's ``exp``/``log``
SAMPLE_DIGITS = 12


@dataclass(frozen=True)
class Choice:
    """``key=a,b,c``, ``key=choice(a,b,c)``, ``key=range(0,3)``: a finite list of values.
    ``shuffle``: ``shuffle(...)``, the values are enumerated in an order drawn from the seed."""

    prefix: str  # "", "+" or "++"
    key: str
    values: tuple[str, ...]
    shuffle: bool = False


@dataclass(frozen=True)
class Interval:
    """``key=interval(a,b)``, ``key=tag(log, interval(a,b))``, ``key=tag(int, ...)``: a
    continuous range, only sampled (random search, an adaptive sweeper), never enumerated.
    A float interval is drawn in ``[low, high)``, an integer one in ``[low, high]``."""

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

    def product(self, seed: int = 0) -> list[list[str]]:
        """Every combination of the choices, the first dimension varying slowest."""
        self._refuse_intervals("the product of the sweeps")
        lists = [[self.override(d, v) for v in values] for d, values in self._ordered_choices(seed)]
        return [[*self.fixed, *combo] for combo in itertools.product(*lists)]

    def zip(self, seed: int = 0) -> list[list[str]]:
        """The i-th value of every list together (``+mlxpy.sweep.mode=zip``)."""
        self._refuse_intervals("a zip of the sweeps (+mlxpy.sweep.mode=zip)")
        choices = self._ordered_choices(seed)
        lengths = {len(values) for _, values in choices}
        if len(lengths) > 1:
            counts = ", ".join(f"'{d.prefix}{d.key}' has {len(v)}" for d, v in choices)
            raise ConfigError(
                f"+mlxpy.sweep.mode=zip pairs the i-th values of every sweep, so every sweep "
                f"needs the same number of values: {counts}. Give them equal lengths, or drop "
                "mode=zip to run every combination"
            )
        count = lengths.pop() if lengths else 1
        return [
            [*self.fixed, *(self.override(d, values[i]) for d, values in choices)]
            for i in range(count)
        ]

    def sample(self, count: int, seed: int) -> list[list[str]]:
        """``count`` random points, the same for the same ``seed``: choices and ranges
        uniformly, intervals uniformly (in log space with ``log``). A space of choices only
        gives ``count`` distinct points; with an interval each point is drawn on its own."""
        if count < 1:
            raise ConfigError(f"+mlxpy.sweep.samples={count}: draw at least 1 point")
        if not self.dimensions:  # nothing varies (a scheduled job's own point): one point
            return [list(self.fixed)]
        rng = random.Random(seed)
        if not any(isinstance(d, Interval) for d in self.dimensions):
            choices = self.choices()
            picked = _distinct_indices(rng, [len(d.values) for d in choices], count)
            return [
                [
                    *self.fixed,
                    *(self.override(d, d.values[i]) for d, i in zip(choices, p, strict=True)),
                ]
                for p in picked
            ]
        points = []
        for _ in range(count):
            point = list(self.fixed)
            for d in self.dimensions:
                if isinstance(d, Choice):
                    value = d.values[_below(rng, len(d.values))]
                else:
                    value = _draw(rng, d)
                point.append(self.override(d, value))
            points.append(point)
        return points

    def choices(self) -> list[Choice]:
        return [d for d in self.dimensions if isinstance(d, Choice)]

    def _ordered_choices(self, seed: int) -> list[tuple[Choice, tuple[str, ...]]]:
        """Each choice with its values in enumeration order (``shuffle(...)`` ones
        permuted by one generator seeded with ``seed``, in dimension order)."""
        rng = random.Random(seed)
        ordered = []
        for d in self.choices():
            values = list(d.values)
            if d.shuffle:
                _shuffle(rng, values)
            ordered.append((d, tuple(values)))
        return ordered

    def _refuse_intervals(self, what: str) -> None:
        for d in self.dimensions:
            if isinstance(d, Interval):
                raise ConfigError(
                    f"'{d.prefix}{d.key}' is an interval, which {what} cannot enumerate: "
                    "draw random points with +mlxpy.sweep.samples=N (and +mlxpy.sweep.seed=S), "
                    "or search it with an adaptive sweeper (+mlxpy.sweep.name=OptunaSweeper)"
                )


# -- random draws, from rng.random() only ----------------------------------------------------
def _below(rng: random.Random, n: int) -> int:
    """A uniform integer in ``[0, n)``."""
    return min(int(rng.random() * n), n - 1)


def _shuffle(rng: random.Random, values: list[Any]) -> None:
    for i in range(len(values) - 1, 0, -1):
        j = _below(rng, i + 1)
        values[i], values[j] = values[j], values[i]


def _distinct_indices(rng: random.Random, sizes: list[int], count: int) -> list[tuple[int, ...]]:
    """``count`` distinct index tuples of the product of ``sizes``, uniformly, in O(count)."""
    total = math.prod(sizes)
    if count > total:
        raise ConfigError(
            f"+mlxpy.sweep.samples={count} asks for more points than the space has ({total}): "
            f"ask for at most {total}, or drop +mlxpy.sweep.samples to run every point"
        )
    if 2 * count > total:  # most of a small space: shuffle its (at most 2 x count) indices
        flat = list(range(total))
        for i in range(count):
            j = i + _below(rng, total - i)
            flat[i], flat[j] = flat[j], flat[i]
        return [_unflatten(k, sizes) for k in flat[:count]]
    seen: set[tuple[int, ...]] = set()
    picked: list[tuple[int, ...]] = []
    while len(picked) < count:  # rejection: fewer than 2 draws per point on average
        point = tuple(_below(rng, n) for n in sizes)
        if point not in seen:
            seen.add(point)
            picked.append(point)
    return picked


def _unflatten(index: int, sizes: list[int]) -> tuple[int, ...]:
    digits = []
    for n in reversed(sizes):
        index, digit = divmod(index, n)
        digits.append(digit)
    return tuple(reversed(digits))


def _draw(rng: random.Random, d: Interval) -> str:
    """One value of an interval, as override text Hydra reads back as the same value."""
    u = rng.random()
    if d.integer:
        low, high = math.ceil(d.low), math.floor(d.high)
        if not d.log:
            return str(min(low + int(u * (high - low + 1)), high))
        # log-uniform over [low, high + 1), floored: P(k) grows as log((k + 1) / k)
        value = math.floor(math.exp(math.log(low) + u * (math.log(high + 1) - math.log(low))))
        return str(min(max(value, low), high))
    if d.log:
        x = math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low)))
    else:
        x = d.low + u * (d.high - d.low)
    x = min(max(float(f"{x:.{SAMPLE_DIGITS}g}"), d.low), d.high)
    return repr(x)


# -- reading a space ---------------------------------------------------------------------------
def from_overrides(overrides: list[str], space_file: Path | None = None) -> SearchSpace:
    """The space of a command line's overrides (``mlxpy.sweep.*`` already removed), and of
    the YAML ``space_file`` when given: its entries come first, and an override of the
    command line on the same key replaces the file's."""
    if space_file is not None:
        overrides = merge_overrides(read_space_file(space_file), overrides)
    from mlxpy.launching.overrides import parse_overrides

    space = SearchSpace()
    for override in parse_overrides(overrides):
        if not override.is_sweep_override():
            space.fixed.append(override.input_line)
            continue
        element = override.get_key_element()  # with its prefix: "+lr", "db@pkg"
        key = element.lstrip("+")
        prefix = element[: len(element) - len(key)]
        space.dimensions.append(_dimension(override, prefix, key))
    return space


def _dimension(override: Any, prefix: str, key: str) -> Dimension:
    from hydra.core.override_parser.types import (
        ChoiceSweep,
        IntervalSweep,
        RangeSweep,
        Transformer,
    )
    from hydra.errors import HydraException

    text = override.input_line
    sweep = override.value()
    tags = set(getattr(sweep, "tags", ()))
    if isinstance(sweep, IntervalSweep):
        return _interval(text, prefix, key, sweep, tags)
    if "log" in tags or "int" in tags:
        raise ConfigError(
            f"'{text}': tag(log, ...) and tag(int, ...) apply to an interval, not to a list "
            "of values: write tag(log, interval(a, b)) (drawn with +mlxpy.sweep.samples=N), "
            "or list the values you want"
        )
    try:
        if isinstance(sweep, ChoiceSweep):
            items: Any = sweep.list
        elif isinstance(sweep, RangeSweep):
            items = sweep.range()
        else:  # glob(...): needs Hydra's config loader
            raise ConfigError(
                f"'{text}': glob(...) is not supported in mlxpy sweeps: list the config "
                f"group's options instead ({key}=a,b,c)"
            )
        values = tuple(Transformer.str(x) for x in items)
    except HydraException as exc:
        raise ConfigError(f"cannot expand the sweep '{text}': {exc}") from exc
    if not values:
        raise ConfigError(f"the sweep '{text}' has no values: check the bounds of its range")
    return Choice(prefix, key, values, shuffle=bool(getattr(sweep, "shuffle", False)))


def _interval(text: str, prefix: str, key: str, sweep: Any, tags: set[str]) -> Interval:
    """``tag(int, interval(a, b))`` and Hydra's cast ``int(interval(a, b))`` are integer
    intervals; ``tag(log, ...)`` draws in log space."""
    low, high = sweep.start, sweep.end
    integer = "int" in tags or (isinstance(low, int) and isinstance(high, int))
    log = "log" in tags
    if not low < high and not (integer and low == high):
        raise ConfigError(f"'{text}': an interval needs low < high, got {low} and {high}")
    if log and low <= 0:
        raise ConfigError(
            f"'{text}': a log interval needs a positive lower bound, got {low}: shift the "
            "interval or drop the log tag"
        )
    if integer and math.ceil(low) > math.floor(high):
        raise ConfigError(f"'{text}': the integer interval holds no integer")
    return Interval(prefix, key, float(low), float(high), log=log, integer=integer)


def space_file_path(text: str, config_dir: Path) -> Path | None:
    """The file ``+mlxpy.sweep.space=<text>`` names (relative to the config dir), or None."""
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = config_dir / path
    if not path.is_file():
        raise ConfigError(
            f"search space file {path} not found (sweep.space={text!r}; a relative path is "
            f"read from the config dir {config_dir}): create it or fix the path"
        )
    return path


def _key_of(override: Any) -> str:
    return override.get_key_element().lstrip("+~")


def merge_overrides(file_overrides: list[str], overrides: list[str]) -> list[str]:
    """The space file's overrides whose key the command line does not set, then the command
    line's: the command line wins on the same key."""
    from mlxpy.launching.overrides import parse_overrides

    given = {_key_of(o) for o in parse_overrides(overrides)}
    kept = [
        text
        for text, o in zip(file_overrides, parse_overrides(file_overrides), strict=True)
        if _key_of(o) not in given
    ]
    return [*kept, *overrides]


def read_space_file(path: Path) -> list[str]:
    """The overrides a YAML search space file stands for, one per key, in file order.

    Each key (a dotted path, or nested mappings of them; ``+``/``++`` prefixes allowed) maps
    to a list (its choices), a string (an override value in Hydra's grammar, so
    ``"interval(0, 1)"``, ``"range(0, 3)"`` or ``"a,b"`` vary and ``adam`` is fixed) or
    another scalar (fixed).
    """
    from mlxpy.launching.options import load_yaml_file

    raw = load_yaml_file(path, "search space file")
    if not isinstance(raw, dict) or not raw:
        got = "nothing" if raw is None or raw == {} else f"a {type(raw).__name__}"
        raise ConfigError(
            f"{path} must hold a mapping of keys to their values (key: [a, b] for choices, "
            f'key: "interval(0, 1)" for a sweep in Hydra\'s grammar, key: value fixed), got {got}'
        )
    overrides: list[str] = []
    _read_entries(path, raw, "", overrides)
    return overrides


def _read_entries(path: Path, data: dict[Any, Any], parent: str, out: list[str]) -> None:
    from mlxpy.launching.overrides import SWEEP_PREFIX, parse_overrides

    for key, value in data.items():
        where = f"{path}: key {parent + str(key)!r}"
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{where}: keys must be non-empty strings (a dotted config path)")
        if key.startswith("~"):
            raise ConfigError(f"{where}: deletions (~key) go on the command line, not here")
        if parent and key.startswith("+"):
            raise ConfigError(f"{where}: put the + prefix on the top-level key")
        dotted = parent + key
        bare = dotted.lstrip("+")
        if bare == SWEEP_PREFIX or bare.startswith(SWEEP_PREFIX + "."):
            raise ConfigError(
                f"{where}: sweep options (mlxpy.sweep.*) go on the command line or in "
                "mlxpy.yaml, not in the search space"
            )
        if isinstance(value, dict):
            if not value:
                raise ConfigError(f"{where}: an empty mapping sets nothing; remove it")
            _read_entries(path, value, dotted + ".", out)
            continue
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"{where}: an empty list of choices; give at least one value")
            # a,b,c: Hydra's choice(...) refuses null; one value is just a fixed one
            text = f"{dotted}={','.join(_element_text(v) for v in value)}"
        elif isinstance(value, str):
            text = f"{dotted}={value}"
        else:
            text = f"{dotted}={_element_text(value)}"
        try:
            parse_overrides([text])
        except ConfigError as exc:
            raise ConfigError(
                f"{where}: {value!r} is not a value in Hydra's override grammar ({exc}); "
                "quote a literal string, e.g. \"'a b'\""
            ) from exc
        out.append(text)


def _element_text(value: Any) -> str:
    """A YAML value as the text of one element of an override (a list's choice, a fixed
    value): a string is read in Hydra's grammar when it is one value (``1e-4`` is a float,
    as on the command line), and quoted, so taken literally, otherwise."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_element_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{_element_text(k)}:{_element_text(v)}" for k, v in value.items()) + "}"
        )
    text = str(value)
    if _is_one_value(text):
        return text
    from hydra.core.override_parser.types import Quote, QuotedString

    return QuotedString(text=text, quote=Quote.single).with_quotes()


def _is_one_value(text: str) -> bool:
    from mlxpy.launching.overrides import parse_overrides

    try:
        (override,) = parse_overrides([f"k={text}"])
    except ConfigError:
        return False
    return not override.is_sweep_override()
