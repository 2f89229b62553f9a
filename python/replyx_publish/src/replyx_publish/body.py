"""Validation of a publish, rule for rule the gateway's ``POST /internal/publish`` schema.

``gateway/src/http/publish-request.ts`` is the reference; ``test/fixtures/publish-conformance.json``
holds both to the same answers (same fields, same sentences, same order of checks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from .errors import PublishValidationError

#: Event types are short identifiers such as ``message:new`` or ``typing.start``.
EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
#: Who may be addressed; an empty or absent audience means everyone on the dialog.
AUDIENCES = ("admin", "widget", "site")
#: Longest idempotency key (same alphabet as event types).
IDEMPOTENCY_KEY_MAX_LENGTH = 200
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,%d}" % IDEMPOTENCY_KEY_MAX_LENGTH)
#: Dialog ids are JavaScript-safe integers: the gateway and the browser read them as numbers.
MAX_SAFE_INTEGER = 2**53 - 1

_FIELDS = ("dialog_id", "type", "data", "audience", "idempotency_key")
_EXAMPLE = 'body must be JSON: {"dialog_id": 123, "type": "message:new", "data": {...}, "audience": ["admin"]}'


@dataclass(frozen=True)
class PublishInput:
    """A validated publish; ``data`` is still the caller's value (encoded separately)."""

    dialog_id: int
    type: str
    data: Any
    audience: Tuple[str, ...] = ()
    idempotency_key: Optional[str] = None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object"


def _dialog_id(value: Any) -> int:
    # JSON has one number type: 5.0 is the integer 5, as in the gateway's JSON.parse.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PublishValidationError("dialog_id", "must be an integer")
    if isinstance(value, float) and not value.is_integer():
        raise PublishValidationError("dialog_id", "must be an integer")
    n = int(value)
    if n > MAX_SAFE_INTEGER:
        raise PublishValidationError("dialog_id", "must be an integer")
    if n < 1:
        raise PublishValidationError("dialog_id", "must be positive")
    return n


def _audience(value: Any) -> Tuple[str, ...]:
    problem = "must be an array of admin, widget, site"
    if not isinstance(value, (list, tuple)) or len(value) > len(AUDIENCES):
        raise PublishValidationError("audience", problem)
    for i, kind in enumerate(value):
        if not isinstance(kind, str) or kind not in AUDIENCES:
            raise PublishValidationError(f"audience.{i}", "must be admin, widget or site")
    return tuple(dict.fromkeys(value))


def parse_publish_body(body: Any) -> PublishInput:
    """Validates a publish body ``{dialog_id, type, data, audience?, idempotency_key?}``.

    Raises :class:`PublishValidationError` with the first problem, in the gateway's order:
    fields in schema order, unknown keys last.
    """
    if not isinstance(body, Mapping):
        raise PublishValidationError("", f"Invalid input: expected object, received {_json_kind(body)}")
    dialog_id = _dialog_id(body.get("dialog_id"))
    kind = body.get("type")
    if not isinstance(kind, str):
        raise PublishValidationError("type", "must be a string")
    if not EVENT_TYPE.fullmatch(kind):
        raise PublishValidationError("type", "must be 1-100 characters of letters, digits, _ . : -")
    if "data" not in body:
        raise PublishValidationError("data", "is required (use null for none)")
    audience = _audience(body["audience"]) if "audience" in body else ()
    key = body.get("idempotency_key")
    if "idempotency_key" in body:
        if not isinstance(key, str):
            raise PublishValidationError("idempotency_key", "must be a string")
        if not IDEMPOTENCY_KEY.fullmatch(key):
            raise PublishValidationError(
                "idempotency_key", f"must be 1-{IDEMPOTENCY_KEY_MAX_LENGTH} characters of letters, digits, _ . : -"
            )
    unknown = [k for k in body if k not in _FIELDS]
    if unknown:
        names = ", ".join(f'"{k}"' for k in unknown)
        raise PublishValidationError("", f"Unrecognized key{'s' if len(unknown) > 1 else ''}: {names}")
    return PublishInput(dialog_id, kind, body["data"], audience, key)


def publish_input(
    dialog_id: int,
    type: str,
    data: Any,
    audience: Optional[Any] = None,
    idempotency_key: Optional[str] = None,
) -> PublishInput:
    """The keyword form of :func:`parse_publish_body`; ``None`` leaves audience/key out."""
    body: dict = {"dialog_id": dialog_id, "type": type, "data": data}
    if audience is not None:
        body["audience"] = audience
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return parse_publish_body(body)


#: The message the gateway answers for a body that is not JSON at all.
NOT_JSON = _EXAMPLE
