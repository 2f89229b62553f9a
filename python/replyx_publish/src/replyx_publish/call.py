"""The pure part of a publish, shared by the sync and asyncio publishers: the FCALL to send and
the meaning of its reply. Key names follow gateway/src/broker/protocol.ts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import redis.exceptions

from .body import PublishInput
from .encoding import encode_data
from .errors import LibraryNotLoadedError, NotPublishedError
from .library import PUBLISH_FUNCTION, Library

KEY_PREFIX = "replyx"
#: Events kept per dialog for resume (the gateway's HISTORY_LENGTH default).
DEFAULT_HISTORY_LENGTH = 1000
#: Seconds a dialog's history lives after its last event (the gateway's HISTORY_TTL_S default).
DEFAULT_HISTORY_TTL_S = 86_400
#: Seconds an idempotency key is remembered after its first publish (the gateway's default).
DEFAULT_IDEMPOTENCY_TTL_S = 3600


@dataclass(frozen=True)
class PublishResult:
    """What one publish did."""

    #: The event id (the history stream id, usable as ``since=``); for a repeated idempotency key,
    #: the first publish's id.
    id: str
    #: True when the idempotency key named an earlier publish and nothing was published now.
    duplicate: bool = False


@dataclass(frozen=True)
class HistorySettings:
    """History and idempotency settings sent with every event."""

    history_length: int = DEFAULT_HISTORY_LENGTH
    history_ttl_s: int = DEFAULT_HISTORY_TTL_S
    idempotency_ttl_s: int = DEFAULT_IDEMPOTENCY_TTL_S


def dialog_stream(dialog_id: int) -> str:
    """The capped history stream of a dialog."""
    return f"{KEY_PREFIX}:dialog:{dialog_id}:events"


def dialog_channel(dialog_id: int) -> str:
    """The pub/sub channel of a dialog."""
    return f"{KEY_PREFIX}:dialog:{dialog_id}"


def dialog_idempotency_key(dialog_id: int, key: str) -> str:
    """The key remembering which event an idempotency key of a dialog published."""
    return f"{KEY_PREFIX}:dialog:{dialog_id}:idem:{key}"


def fcall_args(event: PublishInput, settings: HistorySettings) -> Tuple[Any, ...]:
    """The arguments of ``FCALL replyx_publish`` for one validated event."""
    keys: List[str] = [dialog_stream(event.dialog_id), dialog_channel(event.dialog_id)]
    if event.idempotency_key is not None:
        keys.append(dialog_idempotency_key(event.dialog_id, event.idempotency_key))
    args = [
        str(event.dialog_id),
        event.type,
        encode_data(event.data),
        ",".join(event.audience),
        str(settings.history_length),
        str(settings.history_ttl_s),
        str(settings.idempotency_ttl_s),
    ]
    return ("FCALL", PUBLISH_FUNCTION, len(keys), *keys, *args)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def publish_result(reply: Any) -> PublishResult:
    """Reads ``{id, 1|0}`` (bytes or str, whatever ``decode_responses`` says)."""
    if not isinstance(reply, (list, tuple)) or len(reply) != 2:
        raise NotPublishedError(f"unexpected reply from {PUBLISH_FUNCTION}: {reply!r}")
    return PublishResult(_text(reply[0]), int(reply[1]) == 0)


def loaded_version(reply: Any) -> Optional[int]:
    """The version ``replyx_version`` answered."""
    try:
        return int(_text(reply))
    except ValueError:
        return None


def is_missing_function(err: BaseException) -> bool:
    """Redis says the library (or the function) is not loaded."""
    return "function not found" in str(err).lower()


def is_no_permission(err: BaseException) -> bool:
    """Redis refused the command to this user (ACL); redis-py strips the NOPERM prefix."""
    return isinstance(err, redis.exceptions.NoPermissionError) or "NOPERM" in str(err)


def cannot_load(library: Optional[Library], loaded: Optional[int], why: str) -> LibraryNotLoadedError:
    """The error for a library that Redis lacks and this publisher cannot load."""
    state = "not loaded" if loaded is None else f"at version {loaded}"
    if library is None:
        return LibraryNotLoadedError(
            f"the replyx function library is {state} in Redis and its file was not found ({why}); "
            "start a gateway (it loads the library), or set REPLYX_LUA_LIBRARY / library_path= to gateway/src/broker/replyx.lua"
        )
    return LibraryNotLoadedError(
        f"the {library.name} function library (version {library.version}) is {state} and this Redis user may not load it ({why}); "
        "start a gateway (it loads the library) or give one user +function|load"
    )


def require_timeout(client: Any) -> None:
    """Refuses a client without a socket timeout: a stalled Redis would block every publish forever."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if not kwargs.get("socket_timeout"):
        raise ValueError(
            "this Redis client has no socket_timeout, so a stalled Redis would block publish() forever; "
            "create it with socket_timeout=2 (and socket_connect_timeout=2), or use Publisher.from_url(url)"
        )
