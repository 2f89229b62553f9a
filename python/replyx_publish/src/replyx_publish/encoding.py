"""``data`` to JSON text the way the TypeScript publisher's ``JSON.stringify`` writes it.

What JavaScript would do is done (NaN and ±Infinity become ``null``, an aware ``datetime`` becomes
``Date.toJSON()``'s UTC text with milliseconds, tuples are arrays, integer keys are strings);
what has no faithful JSON form is refused with a :class:`PublishValidationError` naming the path
(naive datetimes, Decimal, sets, bytes, integers beyond 2^53-1 that a JavaScript client would
round, cycles). Pydantic models (v1 and v2) and dataclasses are encoded through their fields.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from decimal import Decimal
from typing import Any, List

from .body import MAX_SAFE_INTEGER
from .errors import PublishValidationError


def _path(parts: List[str]) -> str:
    return ".".join(parts)


def _iso_utc(value: dt.datetime) -> str:
    # Date.prototype.toJSON: UTC, milliseconds, "Z" (microseconds are truncated, as JS keeps ms).
    utc = value.astimezone(dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def to_json_value(value: Any, path: List[str], active: set) -> Any:
    """``value`` as plain JSON data (dict, list, str, int, float, bool, None) or a refusal."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return to_json_value(value.value, path, active)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise PublishValidationError(
                _path(path), f"integer {value} is beyond 2^53-1, JavaScript clients would round it; send it as a string"
            )
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PublishValidationError(
                _path(path), "naive datetime has no time zone; pass an aware one (datetime.now(timezone.utc))"
            )
        return _iso_utc(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        raise PublishValidationError(
            _path(path), "Decimal has no exact JSON number in JavaScript; pass str(value) or float(value)"
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise PublishValidationError(_path(path), "bytes are not JSON; decode them or base64-encode them first")
    if isinstance(value, (set, frozenset)):
        raise PublishValidationError(_path(path), "a set has no order; pass a sorted list")
    if id(value) in active:
        raise PublishValidationError(_path(path), "circular reference")
    active.add(id(value))
    try:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if isinstance(k, enum.Enum):
                    k = k.value
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise PublishValidationError(_path(path), f"key {k!r} is not a string (JSON keys are strings)")
                out[str(k)] = to_json_value(v, path + [str(k)], active)
            return out
        if isinstance(value, (list, tuple)):
            return [to_json_value(v, path + [str(i)], active) for i, v in enumerate(value)]
        if hasattr(value, "model_dump") and callable(value.model_dump):  # pydantic v2
            return to_json_value(value.model_dump(mode="json"), path, active)
        if hasattr(value, "__fields__") and callable(getattr(value, "json", None)):  # pydantic v1
            return to_json_value(json.loads(value.json()), path, active)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return to_json_value(fields, path, active)
    finally:
        active.discard(id(value))
    raise PublishValidationError(
        _path(path), f"{type(value).__name__} is not JSON; convert it to dict, list, str, number, bool or None"
    )


def encode_data(data: Any) -> str:
    """The JSON text of ``data`` for the frame's ``"data"`` member (compact, like JSON.stringify)."""
    plain = to_json_value(data, ["data"], set())
    text = json.dumps(plain, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: JSON.stringify writes it as a \\uXXXX escape, and so does ensure_ascii.
        text = json.dumps(plain, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text


def plain_data(data: Any) -> Any:
    """``data`` as plain JSON data, for callers that embed it in a larger JSON document."""
    return to_json_value(data, ["data"], set())
