"""The runs' frame as typed columns: built from the index's rows, kept in the index as
binary columns (never a pickle: a shared log dir is untrusted), and brought up to date by
adding and removing rows without rebuilding it.

Each column keeps, beside its values, the kind of each value (``codes``: missing, bool, int,
float, str, other), so that after rows come and go its type is the one a build from all rows
would give (:func:`column_type`), and its values are converted exactly when it changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlxpy.rundir import codec

MISSING, BOOL, INT, FLOAT, STR, OTHER = range(6)
_CODE = {type(None): MISSING, bool: BOOL, int: INT, float: FLOAT, str: STR}
#: past this, an int in a float column may not convert back exactly
_EXACT_INT = 2**53
#: run-info times, read as tz-aware datetimes (UTC) when they are strings
TIME_COLUMNS = ("info.start_time", "info.end_time", "info.submit_time")


class Rebuild(Exception):
    """A change this module does not convert exactly: build the frame from the rows."""


def kinds_of(codes: np.ndarray | int, n: int) -> frozenset[int]:
    if isinstance(codes, (int, np.integer)):
        return frozenset((int(codes),)) if n else frozenset()
    return frozenset(np.flatnonzero(np.bincount(codes, minlength=6)).tolist())


def column_type(kinds: frozenset[int]) -> str:
    """The type of a column whose values are of ``kinds`` (as :func:`mlxpy.reading.reader.
    typed_frame` gives it): float stays float, an int with missing values is Int64, ..."""
    missing = MISSING in kinds
    present = kinds - {MISSING}
    if not present:
        return "none"
    if present == {BOOL}:
        return "boolean" if missing else "bool"
    if present == {INT}:
        return "Int64" if missing else "int64"
    if present <= {INT, FLOAT}:
        return "float64"
    if present == {STR}:
        return "str"
    return "object"


def typed(values: list[Any]) -> tuple[Any, np.ndarray | int]:
    """A column's array and codes from its Python values (None where missing)."""
    kinds = set(map(type, values))
    codes: np.ndarray | int
    if len(kinds) == 1:
        codes = _CODE.get(next(iter(kinds)), OTHER)
    else:
        codes = np.fromiter((_CODE.get(type(v), OTHER) for v in values), np.int8, len(values))
    return _array(values, column_type(kinds_of(codes, len(values)))), codes


def _array(values: list[Any], kind: str) -> Any:
    if kind == "bool":
        return np.array(values, dtype=bool)
    if kind == "boolean":
        return pd.array(values, dtype="boolean")
    if kind in ("int64", "Int64"):
        try:
            if kind == "Int64":
                return pd.array(values, dtype="Int64")
            return np.array(values, dtype=np.int64)
        except (OverflowError, TypeError, ValueError):  # beyond int64
            kind = "object"
    if kind == "float64":
        return np.array(values, dtype=np.float64)  # None -> NaN, like the NaN values
    if kind == "str":
        return pd.Series(values, dtype=None).array  # pandas' own string dtype
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def python_values(array: Any, codes: np.ndarray | int) -> list[Any]:
    """The values a column was built from, exactly (a float column's ints are ints again)."""
    n = len(array)
    codes = np.full(n, codes, dtype=np.int8) if isinstance(codes, (int, np.integer)) else codes
    raw = array.tolist() if isinstance(array, np.ndarray) else list(np.asarray(array, dtype=object))
    out: list[Any] = []
    for value, code in zip(raw, codes.tolist(), strict=True):
        if code == MISSING:
            out.append(None)
        elif code == INT:
            if type(value) is float and abs(value) >= _EXACT_INT:
                raise Rebuild("an int beyond float precision")
            out.append(int(value))
        elif code == FLOAT:
            out.append(float(value))
        elif code == BOOL:
            out.append(bool(value))
        else:
            out.append(value)
    return out


class Columns:
    """Typed columns of the runs, by log id (ascending), with their codes."""

    def __init__(self, ids: np.ndarray, data: dict[str, tuple[Any, np.ndarray | int]]):
        self.ids = ids
        self.data = data

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> Columns:
        rows = sorted(rows, key=lambda r: r["log_id"])
        ids = np.fromiter((r["log_id"] for r in rows), np.int64, len(rows))
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        keys.pop("log_id", None)
        data = {k: typed([r.get(k) for r in rows]) for k in keys}
        for key in TIME_COLUMNS:
            if key in data:
                data[key] = (_times(data[key][0]), data[key][1])
        return cls(ids, data)

    def frame(self) -> pd.DataFrame:
        index = pd.Index(self.ids, dtype="int64", name="log_id")
        return pd.DataFrame({k: v[0] for k, v in self.data.items()}, index=index, copy=False)

    def update(self, added: list[dict[str, Any]], removed: set[int]) -> Columns:
        """These columns without the runs ``removed`` (and those added again), with ``added``;
        raises :class:`Rebuild` where a value would not convert exactly."""
        drop = removed | {int(r["log_id"]) for r in added}
        kept = self
        if drop:
            keep = ~np.isin(self.ids, np.fromiter(drop, np.int64, len(drop)))
            kept = Columns(
                self.ids[keep],
                {
                    k: (a[keep], c if isinstance(c, (int, np.integer)) else c[keep])
                    for k, (a, c) in self.data.items()
                },
            )
        return concat([kept, Columns.from_rows(added)])


def concat(parts: list[Columns]) -> Columns:
    """The runs of all ``parts`` (of distinct ids) as one set of columns, in id order."""
    parts = [p for p in parts if len(p.ids)]
    if not parts:
        return Columns(np.empty(0, np.int64), {})
    if len(parts) == 1:
        return parts[0]
    ids = np.concatenate([p.ids for p in parts])
    ordered = bool((np.diff(ids) > 0).all())
    order = None if ordered else np.argsort(ids, kind="stable")
    keys: dict[str, None] = {}
    for part in parts:
        keys.update(dict.fromkeys(part.data))
    data: dict[str, tuple[Any, np.ndarray | int]] = {}
    for key in keys:
        merged = _merge([(p.data.get(key), len(p.ids)) for p in parts])
        if merged is None:
            continue  # no run has the key any more
        array, codes = merged
        if order is not None:
            array = array[order]
            codes = codes if isinstance(codes, (int, np.integer)) else codes[order]
        data[key] = (array, codes)
    return Columns(ids if order is None else ids[order], data)


def _times(array: Any) -> Any:
    """ISO 8601 times with an offset as UTC datetimes (unreadable ones NaT); a column of
    other values (a plugin's own) is left as it is."""
    series = pd.Series(array)
    if pd.api.types.is_string_dtype(series) or series.isna().all():
        return pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce").array
    return array


def _full(codes: np.ndarray | int, n: int) -> np.ndarray:
    if isinstance(codes, (int, np.integer)):
        return np.full(n, codes, dtype=np.int8)
    return codes


def _merge(parts: list[tuple[Any, int]]) -> tuple[Any, np.ndarray | int] | None:
    """One column from its parts (``(array, codes)`` or None where the key is missing)."""
    parts = [((None, MISSING) if col is None else col, n) for col, n in parts if n]
    total = sum(n for _, n in parts)
    uniform = {int(c) for (_, c), _ in parts if isinstance(c, (int, np.integer))}
    codes: np.ndarray | int
    if len(uniform) == 1 and all(isinstance(c, (int, np.integer)) for (_, c), _ in parts):
        codes = uniform.pop()
    else:
        codes = np.concatenate([_full(c, n) for (_, c), n in parts])
        if (codes == codes[0]).all():
            codes = int(codes[0])
    kind = column_type(kinds_of(codes, total))
    if kind == "none" and isinstance(codes, int):
        return None  # no run has the key
    arrays = [a for (a, _), _ in parts if a is not None]
    times = {_kind_of(a).startswith("datetime64") for a in arrays}
    if len(times) > 1:
        raise Rebuild("a time column with other values")
    if times == {True}:
        kind = "time"
    out = []
    for (array, part_codes), n in parts:
        if array is None:  # the key is missing in this part
            out.append(_times([None] * n) if kind == "time" else _array([None] * n, kind))
        elif kind == "none":
            out.append(_array([None] * n, "object"))
        else:
            out.append(_convert(array, part_codes, kind))
    if len(out) == 1:
        return out[0], codes
    if all(isinstance(a, np.ndarray) for a in out) and len({a.dtype for a in out}) == 1:
        return np.concatenate(out), codes
    return pd.concat([pd.Series(a) for a in out], ignore_index=True).array, codes


def _kind_of(array: Any) -> str:
    dtype = array.dtype
    if isinstance(dtype, pd.StringDtype):
        return "str"
    return str(dtype)


def _convert(array: Any, codes: np.ndarray | int, kind: str) -> Any:
    """``array`` as a column of type ``kind``, exactly."""
    have = _kind_of(array)
    if have == kind or kind == "time":
        return array  # a time column: both parts are times (checked by the caller)
    if kind in ("float64", "Int64", "int64", "bool", "boolean") and have in (
        "float64",
        "Int64",
        "int64",
        "bool",
        "boolean",
    ):
        if have == "float64" and kind in ("Int64", "int64"):
            values = np.asarray(array, dtype=np.float64)
            finite = values[~np.isnan(values)]
            if finite.size and np.abs(finite).max() >= _EXACT_INT:
                raise Rebuild("an int beyond float precision")
        if kind == "float64":
            return pd.array(array).to_numpy(dtype=np.float64, na_value=np.nan)
        if kind in ("int64", "bool"):
            return pd.array(array).to_numpy(dtype=kind)
        return pd.array(array).astype(kind)
    return _array(python_values(array, codes), kind)


# -- kept in the index -----------------------------------------------------------------------
def encode_column(array: Any, codes: np.ndarray | int) -> tuple[str, bytes, bytes]:
    """``(kind, codes, data)``: numbers as their bytes, strings and other values as JSON."""
    kind = _kind_of(array)
    code_blob = bytes([int(codes)]) if isinstance(codes, (int, np.integer)) else codes.tobytes()
    if kind in ("float64", "int64", "bool"):
        return kind, code_blob, np.ascontiguousarray(array).tobytes()
    if kind in ("Int64", "boolean"):
        values = array.to_numpy(dtype="int64" if kind == "Int64" else "bool", na_value=0)
        return kind, code_blob, values.tobytes()
    if kind.startswith("datetime64["):
        return kind, code_blob, np.asarray(pd.DatetimeIndex(array).asi8).tobytes()
    if kind == "str":  # at once, not element by element (pandas' per-item boxing is slow)
        values = array.to_numpy(dtype=object, na_value=None).tolist()
    else:
        values = list(array)
    return ("str" if kind == "str" else "object"), code_blob, codec.encode(values)


def decode_column(kind: str, code_blob: bytes, data: bytes, n: int) -> tuple[Any, Any]:
    codes: np.ndarray | int
    if len(code_blob) == 1:
        codes = code_blob[0]
    elif len(code_blob) == n:
        codes = np.frombuffer(code_blob, np.int8)
    else:
        raise ValueError("cached codes of another length")
    if kind in ("float64", "int64", "bool"):
        array = np.frombuffer(data, dtype=kind)
    elif kind in ("Int64", "boolean"):
        values = np.frombuffer(data, dtype="int64" if kind == "Int64" else "bool")
        mask = _full(codes, n) == MISSING
        masked = pd.arrays.IntegerArray if kind == "Int64" else pd.arrays.BooleanArray
        array = masked(values.copy(), mask)  # type: ignore[assignment]
    elif kind.startswith("datetime64[") and kind.endswith(", UTC]"):
        unit = kind[len("datetime64[") : -len(", UTC]")]
        if unit not in ("s", "ms", "us", "ns"):
            raise ValueError(f"a cached column of unknown type {kind!r}")
        stamps = np.frombuffer(data, dtype="int64").view(f"M8[{unit}]")
        array = pd.DatetimeIndex(stamps).tz_localize("UTC").array
    elif kind == "str":
        array = pd.Series(codec.decode(data), dtype=None).array
    elif kind == "object":
        out = np.empty(n, dtype=object)
        out[:] = codec.decode(data)
        array = out
    else:
        raise ValueError(f"a cached column of unknown type {kind!r}")
    if len(array) != n:
        raise ValueError("a cached column of another length")
    return array, codes
