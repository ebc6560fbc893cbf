"""The one JSON codec of run directories: metric lines, ``run.json`` and index rows.

orjson is fast but writes NaN and infinities as ``null``; records holding them are written by
Python's json instead (``NaN``, ``Infinity``), and the decoder accepts both, so a non-finite
value reads back as itself, never as missing.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_LINE = orjson.OPT_APPEND_NEWLINE
_DOC = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _non_finite(values: Any) -> bool:
    return any(isinstance(v, float) and not math.isfinite(v) for v in values)


def _has_non_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_has_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_non_finite(v) for v in obj)
    return False


def encode_record(record: dict[str, Any]) -> bytes:
    """One flat record as one line (with its newline). Raises TypeError on non-str keys."""
    line = orjson.dumps(record, option=_LINE)
    if b"null" in line and _non_finite(record.values()):
        return (json.dumps(record, allow_nan=True, separators=(",", ":")) + "\n").encode()
    return line


def encode(obj: Any) -> bytes:
    """A document (nested dicts and lists); unknown types are written as their ``str``."""
    blob = orjson.dumps(obj, option=_DOC, default=str)
    if b"null" in blob and _has_non_finite(obj):  # orjson wrote a NaN or an infinity as null
        return json.dumps(obj, default=str, allow_nan=True, separators=(",", ":")).encode()
    return blob


def decode(blob: bytes | str) -> Any:
    """Decode what :func:`encode` or :func:`encode_record` wrote; ValueError if it is not JSON."""
    try:
        return orjson.loads(blob)
    except orjson.JSONDecodeError:
        return json.loads(blob)  # NaN / Infinity, which orjson refuses
