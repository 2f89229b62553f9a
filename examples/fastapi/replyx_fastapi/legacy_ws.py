"""Legacy mode: the pre-migration design, kept on purpose (as examples/backend/src/legacy-ws.ts).
Each uvicorn worker serves /ws/ itself and keeps its sockets in its OWN memory, with no fan-out
between workers: a message POSTed to worker K reaches only the sockets that live on worker K.
With several workers this is the seed's desync ("every other time"); with one it is not.

Credentials are the gateway's (the ``replyx.token.<JWT>`` subprotocol answered with ``replyx.v1``,
``Authorization: Bearer``, or the seed's ``?token=`` / ``?site_token=``), refusals close with the
gateway's codes, and ``since=`` is read from the same Redis history with the same event ids, so a
client moved between the gateway and this mode resumes without a gap or gets ``resync``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

import redis.asyncio
from starlette.websockets import WebSocket, WebSocketDisconnect


log = logging.getLogger("replyx.backend")

REPLYX_PROTOCOL = "replyx.v1"
TOKEN_PROTOCOL_PREFIX = "replyx.token."
RESYNC_FRAME = '{"type":"resync"}'
SINCE_AHEAD_REASON = "since is ahead of the dialog's newest event"
EVENT_ID_PART_MAX = 2**64 - 1
CLOSE = {"UNAUTHORIZED": 4001, "ORIGIN_FORBIDDEN": 4003, "DIALOG_NOT_FOUND": 4004, "BAD_REQUEST": 4009}
#: nginx marks /ws/ handshakes with this header only when the stack plan routes /ws/ to the backend
#: (examples/backend/src/legacy-route.ts); a hand-routed /ws/ carries no mark and is refused with
#: NOT_ROUTED (gateway/src/close-codes.ts), which clients retry with backoff and then resume
#: with since=, instead of landing in one worker's memory. examples/fastapi/desync.test.ts
#: checks both against the TypeScript side.
WS_ROUTE_HEADER = "x-replyx-ws-route"
WS_ROUTE_BACKEND = "backend"
NOT_ROUTED = (4102, "/ws/ is routed to the backend but the stack plan routes it to the gateway: run npm run check")
NOT_ROUTED_LOG_INTERVAL_S = 10.0
LOG_TAG = {"admin": "[Admin]", "widget": "[Widget]", "site": "[Site]"}
QUERY_TOKEN = {"admin": "token", "site": "site_token", "widget": None}
HEARTBEAT_MS = 25_000
_EVENT_ID = re.compile(r"(\d{1,20})-(\d{1,20})")


def event_id_problem(value: str) -> Optional[str]:
    """Why ``value`` is not a stream id (``<ms>-<seq>``, parts ≤ 2^64-1), or None."""
    m = _EVENT_ID.fullmatch(value)
    if not m:
        return "since must be an event id such as 1732780000000-0"
    if int(m.group(1)) > EVENT_ID_PART_MAX or int(m.group(2)) > EVENT_ID_PART_MAX:
        return f"since has a part above {EVENT_ID_PART_MAX} (2^64-1)"
    return None


def event_key(event_id: str) -> Tuple[int, int]:
    """A stream id as a sortable pair."""
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def presented_token(ws: WebSocket, kind: str) -> Optional[str]:
    """The token from the subprotocol, else a Bearer header, else the kind's deprecated query parameter."""
    for offered in ws.scope.get("subprotocols", []):
        if offered.startswith(TOKEN_PROTOCOL_PREFIX):
            return offered[len(TOKEN_PROTOCOL_PREFIX):]
    auth = ws.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    param = QUERY_TOKEN[kind]
    return ws.query_params.get(param) if param else None


@dataclass(eq=False)
class Member:
    """One socket on this worker; ``pending`` holds live events while its ``since`` replay runs."""

    kind: str
    ws: WebSocket
    pending: Optional[List[Tuple[str, str]]] = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LegacyWebSockets:
    """This worker's /ws/ endpoints and its in-memory hub."""

    def __init__(self, redis_client: "redis.asyncio.Redis[Any]", history_length: int) -> None:
        self._redis = redis_client
        self._history_length = history_length
        self._hub: Dict[int, Set[Member]] = {}
        self._not_routed_unlogged = 0
        self._not_routed_logged_at = float("-inf")

    async def deliver(self, dialog_id: int, event_id: str, frame: str) -> int:
        """Sends an event frame to this worker's sockets on the dialog (and no one else's)."""
        sent = 0
        for m in list(self._hub.get(dialog_id, ())):
            if m.pending is not None:
                m.pending.append((event_id, frame))
            else:
                await self._send(m, frame)
            sent += 1
        return sent

    async def _send(self, m: Member, frame: str) -> None:
        async with m.lock:
            try:
                await m.ws.send_text(frame)
            except Exception:  # a socket closing under us; its receive loop removes it
                pass

    def _note_not_routed(self, kind: str) -> None:
        """Counts a refused unmarked handshake; logs at most every NOT_ROUTED_LOG_INTERVAL_S with the count since."""
        self._not_routed_unlogged += 1
        now = time.monotonic()
        if now - self._not_routed_logged_at < NOT_ROUTED_LOG_INTERVAL_S:
            return
        log.warning(
            f"{LOG_TAG[kind]} legacy /ws/ handshake refused with {NOT_ROUTED[0]} ({self._not_routed_unlogged} since the last such line): "
            f"nginx sent /ws/ to the backend without the {WS_ROUTE_HEADER} header it sets only when the stack plan routes /ws/ here "
            "(wsRoute: backend): nginx.conf was edited by hand (or a client bypassed nginx); clients retry with backoff. "
            "Run npm run check, then npm run stack -- apply (runbooks/ws-desync.md)"
        )
        self._not_routed_logged_at = now
        self._not_routed_unlogged = 0

    async def serve(self, ws: WebSocket, kind: str, dialog_id: int, check: Callable[[str, Optional[str], Optional[str]], Awaitable[int]]) -> None:
        """Accepts, checks (parameters, credentials, ownership, origin), then serves one socket."""
        offered = ws.scope.get("subprotocols", [])
        # Accepted first: a browser cannot read a refused handshake's status, only a close code.
        await ws.accept(subprotocol=REPLYX_PROTOCOL if REPLYX_PROTOCOL in offered else None)
        if ws.headers.get(WS_ROUTE_HEADER) != WS_ROUTE_BACKEND:
            self._note_not_routed(kind)
            await ws.close(*NOT_ROUTED)
            return
        since = ws.query_params.get("since")
        problem = None if since is None else event_id_problem(since)
        if problem:
            log.warning(f"{LOG_TAG[kind]} connection refused: {problem}")
            await ws.close(CLOSE["BAD_REQUEST"], problem)
            return
        from .app import ApiError  # the API's refusals, mapped to close codes

        try:
            exp = await check(kind, presented_token(ws, kind), ws.headers.get("origin") if kind == "site" else None)
        except ApiError as err:
            code = {"UNAUTHORIZED": 4001, "ORIGIN_FORBIDDEN": 4003}.get(err.code, CLOSE["DIALOG_NOT_FOUND"])
            words = f"WEBSOCKET_4003_ERROR {LOG_TAG[kind]} domain forbidden" if code == 4003 else f"{LOG_TAG[kind]} connection refused"
            log.warning(f"{words}: {err}")
            await ws.close(code, str(err)[:120])
            return
        except Exception as err:
            log.error(f"{LOG_TAG[kind]} legacy handshake failed: {err!r}")
            await ws.close(1011, "internal error")
            return
        member = Member(kind, ws, [] if since is not None else None)
        self._hub.setdefault(dialog_id, set()).add(member)
        log.info(f"{LOG_TAG[kind]} legacy connection on worker {os.getpid()} to dialog {dialog_id}")
        expiry = asyncio.get_running_loop().create_task(self._close_at(member, exp))
        try:
            await self._send(member, json.dumps({"type": "connected", "server": "backend", "instance": f"backend-{os.getpid()}", "worker": os.getpid(), "heartbeat_ms": HEARTBEAT_MS}))
            if since is not None:
                await self._resume(member, dialog_id, since)
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text and len(text) <= 256:
                    try:
                        if json.loads(text).get("type") == "ping":
                            await self._send(member, '{"type":"pong"}')
                    except (ValueError, AttributeError):
                        pass  # the legacy design ignored what it did not understand
        except WebSocketDisconnect:
            pass
        finally:
            expiry.cancel()
            self._hub.get(dialog_id, set()).discard(member)
            if not self._hub.get(dialog_id):
                self._hub.pop(dialog_id, None)
            log.info(f"{LOG_TAG[kind]} legacy connection closed")

    async def _close_at(self, member: Member, exp: Optional[int]) -> None:
        if not exp:
            return
        await asyncio.sleep(max(0.0, exp - time.time()))
        async with member.lock:
            try:
                await member.ws.close(CLOSE["UNAUTHORIZED"], "token expired")
            except Exception:
                pass

    async def _resume(self, member: Member, dialog_id: int, since: str) -> None:
        # Joined first (live events buffer in member.pending), then the history read: every
        # event is in the read, buffered, or both (deduplicated by id), never neither.
        stream = f"replyx:dialog:{dialog_id}:events"
        result: Optional[Tuple[str, List[Tuple[str, str]]]] = None
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                first, last, entries = await pipe.xrange(stream, "-", "+", count=1).xrevrange(stream, "+", "-", count=1).xrange(
                    stream, since, "+", count=max(1, self._history_length) + 1
                ).execute()
            result = self._judge(since, first, last, entries, member.kind)
        except Exception as err:
            log.warning(f"{LOG_TAG[member.kind]} history unreadable; sending resync: {err}")
        buffered = member.pending or []
        member.pending = None
        if result and result[0] == "ahead":
            await member.ws.close(CLOSE["BAD_REQUEST"], SINCE_AHEAD_REASON)
            return
        after: Optional[str] = since
        replay: List[Tuple[str, str]] = []
        if result is None or result[0] == "gap":
            await self._send(member, RESYNC_FRAME)
            after = None
        else:
            replay = result[1]
        seen = set()
        for event_id, frame in sorted(replay + buffered, key=lambda e: event_key(e[0])):
            if (after is not None and event_key(event_id) <= event_key(after)) or event_id in seen:
                continue
            seen.add(event_id)
            await self._send(member, frame)

    def _judge(self, since: str, first: Any, last: Any, entries: Any, kind: str) -> Tuple[str, List[Tuple[str, str]]]:
        def text(v: Any) -> str:
            return v.decode() if isinstance(v, bytes) else str(v)

        if not first or not last or event_key(since) < event_key(text(first[0][0])):
            return "gap", []
        if event_key(since) > event_key(text(last[0][0])):
            return "ahead", []
        events: List[Tuple[str, str]] = []
        for raw_id, fields in entries:
            event_id = text(raw_id)
            if len(events) == self._history_length:
                break
            if event_key(event_id) <= event_key(since):
                continue
            f = {text(k): text(v) for k, v in fields.items()}
            audience = [a for a in f.get("aud", "").split(",") if a]
            if "body" in f and (not audience or kind in audience):
                events.append((event_id, '{"id":"%s",%s}' % (event_id, f["body"])))
        return "ok", events
