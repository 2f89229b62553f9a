"""The FastAPI app: the reference backend's API (examples/backend/src/http-api.ts) for the seed's
three kinds of client. Every message is stored with its outbox row in one transaction, answered
201 once durable, then published through replyx_publish (the relay does it if Redis is away)."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
import time
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Tuple

import redis.asyncio
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from replyx_publish import AsyncPublisher, HistorySettings
from replyx_publish.encoding import plain_data

from . import db
from .access import Grant, check_grant, is_host_allowed, origin_host, origin_of
from .config import settings_or_exit
from .legacy_ws import LegacyWebSockets
from .relay import MESSAGE_EVENT, Relay, message_data
from .tokens import TokenRefused, Tokens, claimed_kind

settings = settings_or_exit()


class JsonLines(logging.Formatter):
    """One JSON object per line, like the rest of the stack's services."""

    def format(self, record: logging.LogRecord) -> str:
        # `extra={"fields": {...}}` adds JSON fields a runbook reads (jq), as pino's object argument does.
        fields = getattr(record, "fields", {})
        return json.dumps({"level": record.levelname.lower(), "time": datetime.now(timezone.utc).isoformat(), "service": "backend", "pid": os.getpid(), **fields, "msg": record.getMessage()})


_handler = logging.StreamHandler(sys.stdout)
_handler.setFormatter(JsonLines())
log = logging.getLogger("replyx.backend")
log.addHandler(_handler)
log.setLevel(settings.log_level.upper() if settings.log_level.upper() in logging._nameToLevel else "INFO")
log.propagate = False

app = FastAPI(title="replyx FastAPI backend", docs_url=None, redoc_url=None, openapi_url=None)
tokens = Tokens(settings.jwt_secret, settings.site_token_secret, settings.widget_token_secret, settings.policy)
state: Dict[str, Any] = {}

SENDER = {"admin": "operator", "site": "site", "widget": "user"}
STATUS_BY_DENIAL = {"UNAUTHORIZED": 401, "ORIGIN_FORBIDDEN": 403, "DIALOG_NOT_FOUND": 404}
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")
VISITOR_KEY = re.compile(r"[A-Za-z0-9_-]{20,128}")
JTI = re.compile(r"[A-Za-z0-9._:-]{8,128}")
MAX_SAFE_INTEGER = 2**53 - 1


class ApiError(Exception):
    """Answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def answer(status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    """JSON with the stack's encoding (datetimes as JavaScript writes them), never cached."""
    return JSONResponse(plain_data(body), status_code=status, headers={"cache-control": "no-store", **(headers or {})})


@app.exception_handler(ApiError)
async def api_error(_request: Request, err: ApiError) -> JSONResponse:
    return answer(err.status, {"error": {"code": err.code, "message": str(err)}})


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(err.status_code, "BAD_REQUEST")
    message = f"no route for {request.url.path}" if err.status_code == 404 else f"{request.method} is not allowed on {request.url.path}"
    return answer(err.status_code, {"error": {"code": code, "message": message}})


@app.exception_handler(Exception)
async def internal_error(_request: Request, err: Exception) -> JSONResponse:
    import psycopg

    if isinstance(err, (psycopg.OperationalError, TimeoutError)):
        log.warning(f"database unavailable: {err}")
        return answer(503, {"error": {"code": "DATABASE_UNAVAILABLE", "message": "the database is unavailable; nothing was published. Retry with the same Idempotency-Key"}}, {"retry-after": "1"})
    log.error(f"request failed: {err!r}")
    return answer(500, {"error": {"code": "INTERNAL", "message": "internal error"}})


@app.on_event("startup")
async def start() -> None:
    client = redis.asyncio.Redis.from_url(settings.redis_url, socket_timeout=settings.command_timeout_s, socket_connect_timeout=settings.command_timeout_s)
    publisher = AsyncPublisher(client, settings=HistorySettings(history_length=settings.history_length, history_ttl_s=settings.history_ttl_s))
    pool = db.Pool(settings.database_url, size=4, timeout_s=3.0)
    legacy = LegacyWebSockets(client, settings.history_length)

    async def deliver_locally(row: Dict[str, Any], event_id: str) -> None:
        # Legacy /ws/ mode: only this worker's sockets get it (the seed's desync with several workers).
        frame = {"id": event_id, "type": MESSAGE_EVENT, "dialog_id": int(row["dialog_id"]), "data": message_data(row), "ts": int(time.time() * 1000)}
        await legacy.deliver(int(row["dialog_id"]), event_id, json.dumps(plain_data(frame), separators=(",", ":"), ensure_ascii=False))

    relay = Relay(pool, publisher, settings.outbox_poll_ms, settings.outbox_retry_max_ms, settings.idempotency_retention_s, deliver_locally)
    state.update(redis=client, publisher=publisher, pool=pool, relay=relay, legacy=legacy)
    relay.start()


@app.on_event("shutdown")
async def stop() -> None:
    await state["relay"].stop()
    await state["publisher"].close()
    await state["pool"].close()


def dialog_id_of(raw: str, what: str = "dialog id") -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_SAFE_INTEGER:
        raise ApiError(400, "BAD_REQUEST", f"{what}: must be an integer from 1 to {MAX_SAFE_INTEGER}")
    return int(raw)


def id_field(body: Dict[str, Any], name: str, required: bool = True) -> Optional[int]:
    value = body.get(name)
    if value is None and not required and name not in body:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SAFE_INTEGER:
        raise ApiError(400, "BAD_REQUEST", f"body: {name}: must be an integer from 1 to {MAX_SAFE_INTEGER}")
    return value


async def json_body(request: Request, allowed: set) -> Dict[str, Any]:
    """A JSON object body within MAX_BODY_BYTES with only ``allowed`` keys."""
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "send the body as application/json")
    raw = await request.body()
    if len(raw) > settings.max_body_bytes:
        raise ApiError(413, "PAYLOAD_TOO_LARGE", f"body is larger than {settings.max_body_bytes} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "BAD_REQUEST", "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "BAD_REQUEST", "body: must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "BAD_REQUEST", f"body: unknown key(s) {', '.join(unknown)}")
    return body


def bearer(request: Request) -> Optional[str]:
    value = request.headers.get("authorization", "")
    return value[7:].strip() or None if value[:7].lower() == "bearer " else None


async def verified_caller(kind: str, token: Optional[str], origin: Optional[str]) -> Tuple[Grant, int]:
    """What a ``kind`` token grants and when it expires; ``origin`` is a site's browser Origin, if any."""
    try:
        who = tokens.verify(kind, token)
    except TokenRefused as refused:
        raise ApiError(401, "UNAUTHORIZED", f"missing {kind} token" if refused.reason == "missing" else f"{kind} token {refused.reason}") from None
    if kind == "admin":
        return Grant("admin", user_id=who.user_id), who.exp
    if kind == "site":
        if await db.is_site_token_revoked(state["pool"], who.jti or ""):
            raise ApiError(401, "UNAUTHORIZED", "site token revoked")
        host = None if origin is None else origin_host(origin) or ""
        return Grant("site", user_id=who.user_id, assistant_id=who.assistant_id, dialog_id=who.dialog_id, jti=who.jti, origin_host=host), who.exp
    return Grant("widget", assistant_id=who.assistant_id, dialog_id=who.dialog_id, origin_host=origin_host(who.origin)), who.exp


async def caller_for(route: str, request: Request) -> Grant:
    """Who is calling: the route's kind, or on shared routes the token's claimed kind."""
    token = bearer(request)
    kind = route if route != "any" else (claimed_kind(token) or "admin") if token else "site" if "site_token" in request.query_params else None
    if kind is None:
        raise ApiError(401, "UNAUTHORIZED", "send Authorization: Bearer <token> (an operator, site or widget session token)")
    if not token and kind == "site" and request.query_params.get("site_token"):
        token = request.query_params["site_token"]  # the seed's deprecated query credential
    return (await verified_caller(kind, token, request.headers.get("origin") if kind == "site" else None))[0]


async def authorise(grant: Grant, dialog_id: int) -> None:
    """Ownership, then origin: the same 404 for missing and foreign dialogs."""
    result = check_grant(grant, dialog_id, await db.dialog_access(state["pool"], dialog_id))
    if result == "not-found":
        raise ApiError(404, "DIALOG_NOT_FOUND", "dialog not found")
    if result == "origin":
        raise ApiError(403, "ORIGIN_FORBIDDEN", "origin not allowed for this dialog")


def idempotency_scope(grant: Grant, dialog_id: int) -> str:
    """``<kind>:<credential subject>:dialog:<id>``: two callers never share a key."""
    if grant.kind == "admin":
        return f"admin:user:{grant.user_id}:dialog:{dialog_id}"
    if grant.kind == "site":
        return f"site:token:{grant.jti}:dialog:{dialog_id}"
    return f"widget:assistant:{grant.assistant_id}:dialog:{dialog_id}"


async def post_message(request: Request, route: str, raw_dialog_id: str, template: str) -> JSONResponse:
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(400, "BAD_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-200 visible ASCII characters (no spaces), e.g. a UUID")
    dialog_id = dialog_id_of(raw_dialog_id)
    body = await json_body(request, {"text"})
    text = body.get("text")
    if not isinstance(text, str):
        raise ApiError(400, "BAD_REQUEST", "body: text: must be a string")
    text = text.strip()
    if not text:
        raise ApiError(400, "BAD_REQUEST", "body: text: text must not be empty")
    if len(text.encode("utf-16-le")) // 2 > 4000:
        raise ApiError(400, "BAD_REQUEST", "body: text: text must be at most 4000 characters")
    if "\x00" in text:
        raise ApiError(400, "BAD_REQUEST", "body: text: text must not contain NUL (U+0000) characters")
    grant = await caller_for(route, request)
    await authorise(grant, dialog_id)
    claim = None
    if key is not None:
        claim = db.IdempotencyClaim(idempotency_scope(grant, dialog_id), key, db.request_hash(f"POST {template}", {"text": text}), settings.idempotency_retention_s)
    outcome, row = await db.store_message(state["pool"], dialog_id, SENDER[grant.kind], text, claim, settings.outbox_claim_delay_ms)
    if outcome == "key-reused":
        raise ApiError(422, "IDEMPOTENCY_KEY_REUSED", f"Idempotency-Key {json.dumps(key)} was used for another request on this dialog; use a new key for a new message")
    assert row is not None
    if outcome == "replayed":
        log.info(f"retry of message {row['id']} answered from its Idempotency-Key")
        return answer(201, {"message": row, "event_id": row["event_id"]}, {"idempotent-replayed": "true"})
    event_id = await state["relay"].publish_now(row)
    if event_id:
        log.info(f"Broadcasting message {row['id']} to dialog {dialog_id}")
    else:
        log.info(f"message {row['id']} stored; the outbox relay publishes it when Redis is back")
    return answer(201, {"message": {**row, "event_id": event_id}, "event_id": event_id})


@app.get("/health")
async def health() -> JSONResponse:
    async def probe(check: Any) -> str:
        try:
            await check()
            return "ok"
        except Exception as err:
            return f"error: {err}"

    async def db_check() -> None:
        async with state["pool"].connection() as c:
            await c.execute("SELECT 1")

    db_state = await probe(db_check)
    redis_state = await probe(state["redis"].ping)
    status = "ok" if db_state == "ok" and redis_state == "ok" else "degraded"
    return answer(200 if status == "ok" else 503, {"status": status, "service": "backend", "kind": "fastapi", "pid": os.getpid(), "workers": settings.workers, "db": db_state, "redis": redis_state})


@app.post("/api/site/dialogs/{dialog_id}/messages")
async def post_site(request: Request, dialog_id: str) -> JSONResponse:
    return await post_message(request, "site", dialog_id, "/api/site/dialogs/{id}/messages")


@app.post("/api/widget/dialogs/{dialog_id}/messages")
async def post_widget(request: Request, dialog_id: str) -> JSONResponse:
    return await post_message(request, "widget", dialog_id, "/api/widget/dialogs/{id}/messages")


@app.post("/api/dialogs/{dialog_id}/messages")
async def post_admin(request: Request, dialog_id: str) -> JSONResponse:
    return await post_message(request, "admin", dialog_id, "/api/dialogs/{id}/messages")


@app.get("/api/dialogs/{dialog_id}/messages")
async def list_messages(request: Request, dialog_id: str) -> JSONResponse:
    dialog = dialog_id_of(dialog_id)
    q = request.query_params
    since, limit = q.get("since", "0"), q.get("limit", "100")
    if not since.isdigit() or not limit.isdigit() or not 1 <= int(limit) <= 500:
        raise ApiError(400, "BAD_REQUEST", "query: since must be a whole number, limit 1-500")
    grant = await caller_for("any", request)
    await authorise(grant, dialog)
    return answer(200, {"dialog_id": dialog, "messages": await db.list_messages(state["pool"], dialog, int(since), int(limit))})


@app.delete("/api/dialogs/{dialog_id}/messages")
async def clear_probe(request: Request, dialog_id: str) -> JSONResponse:
    # Only a probe dialog's messages can be deleted: the health probe cleans up after itself.
    dialog = dialog_id_of(dialog_id)
    grant = await caller_for("admin", request)
    await authorise(grant, dialog)
    deleted = await db.clear_probe_dialog(state["pool"], dialog)
    if deleted is None:
        raise ApiError(409, "NOT_A_PROBE_DIALOG", f"dialog {dialog} is not a probe dialog: only a probe dialog's messages can be deleted")
    return answer(200, {"dialog_id": dialog, "deleted": deleted})


@app.post("/api/widget/sessions")
async def widget_session(request: Request) -> JSONResponse:
    body = await json_body(request, {"assistant_id", "parent_origin", "visitor_key"})
    assistant_id = id_field(body, "assistant_id")
    assert assistant_id is not None
    parent = body.get("parent_origin")
    if parent is not None and (not isinstance(parent, str) or len(parent) > 2048):
        raise ApiError(400, "BAD_REQUEST", "body: parent_origin: must be a string of at most 2048 characters")
    visitor_key = body.get("visitor_key")
    if visitor_key is not None and (not isinstance(visitor_key, str) or not VISITOR_KEY.fullmatch(visitor_key)):
        raise ApiError(400, "BAD_REQUEST", "body: visitor_key: visitor_key must be the value a previous session returned")
    claimed = parent if parent is not None else request.headers.get("origin")
    if not claimed or claimed == "null":
        raise ApiError(403, "ORIGIN_FORBIDDEN", "missing origin: send parent_origin (the embedding page) or an Origin header")
    host = origin_host(claimed)
    if not host:
        raise ApiError(403, "ORIGIN_FORBIDDEN", "parent_origin/Origin must be an http(s) origin")
    origin = origin_of(claimed)
    assistant = await db.assistant_by_id(state["pool"], assistant_id)
    if not assistant or not is_host_allowed(host, assistant[1]):
        # The seed's grep word for a refused widget domain, with the fields runbooks/domain-4003.md reads.
        log.warning(
            f"WEBSOCKET_4003_ERROR [Widget] domain forbidden: widget session refused: assistant_id={assistant_id} origin={json.dumps(origin)}",
            extra={"fields": {"assistant_id": assistant_id, "origin": origin}},
        )
        raise ApiError(403, "ORIGIN_FORBIDDEN", f"origin {origin} is not allowed for assistant {assistant_id}")
    new_key: Optional[str] = None
    if visitor_key:
        found = await db.visitor_dialog(state["pool"], assistant_id, db.visitor_key_hash(visitor_key))
        if found is None:
            raise ApiError(404, "VISITOR_NOT_FOUND", "no dialog of this assistant has that visitor_key; call again without visitor_key to start a new dialog")
        dialog_id = found
    else:
        new_key = secrets.token_urlsafe(32)
        dialog_id = await db.create_visitor_dialog(state["pool"], assistant_id, db.visitor_key_hash(new_key))
    signed = tokens.sign_widget(dialog_id, assistant_id, origin)
    reply: Dict[str, Any] = {"token": signed["token"], "expires_at": datetime.fromtimestamp(int(signed["exp"]), timezone.utc), "dialog_id": dialog_id}
    if new_key:
        reply["visitor_key"] = new_key
    return answer(201, reply)


@app.post("/api/site-tokens")
async def issue_site_token(request: Request) -> JSONResponse:
    grant = await caller_for("admin", request)
    body = await json_body(request, {"assistant_id", "dialog_id", "ttl_s"})
    assistant_id = id_field(body, "assistant_id")
    dialog_id = id_field(body, "dialog_id", required=False)
    ttl = body.get("ttl_s", settings.policy.site_max_ttl_s)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= settings.policy.site_max_ttl_s:
        raise ApiError(400, "BAD_REQUEST", f"body: ttl_s: must be a whole number from 60 to {settings.policy.site_max_ttl_s}")
    assistant = await db.assistant_by_id(state["pool"], assistant_id or 0)
    if not assistant or assistant[0] != grant.user_id:
        raise ApiError(404, "NOT_FOUND", "assistant not found")
    if dialog_id is not None:
        access = await db.dialog_access(state["pool"], dialog_id)
        if access is None or access.assistant_id != assistant_id:
            raise ApiError(404, "NOT_FOUND", "dialog not found")
    signed = tokens.sign_site(grant.user_id or 0, assistant_id or 0, dialog_id, ttl)
    await db.register_site_token(state["pool"], str(signed["jti"]), grant.user_id or 0, assistant_id or 0, dialog_id, int(signed["exp"]))
    return answer(201, {
        "token": signed["token"], "jti": signed["jti"], "expires_at": datetime.fromtimestamp(int(signed["exp"]), timezone.utc),
        "assistant_id": assistant_id, "dialog_id": dialog_id,
    })


@app.delete("/api/site-tokens/{jti}")
async def revoke_site_token(request: Request, jti: str) -> Response:
    grant = await caller_for("admin", request)
    if not JTI.fullmatch(jti):
        raise ApiError(400, "BAD_REQUEST", "jti must be 8-128 characters of A-Z a-z 0-9 . _ : -")
    if not await db.revoke_site_token(state["pool"], grant.user_id or 0, jti):
        raise ApiError(404, "NOT_FOUND", "site token not found")
    return Response(status_code=204, headers={"cache-control": "no-store"})


async def legacy_socket(ws: WebSocket, kind: str, raw_dialog_id: str) -> None:
    """Legacy /ws/ (wsRoute: backend): this worker's own sockets, as before the migration."""
    if not re.fullmatch(r"\d{1,15}", raw_dialog_id) or int(raw_dialog_id) < 1:
        await ws.close()  # before accepting: an HTTP 403, like an unknown path
        return
    dialog_id = int(raw_dialog_id)

    async def check(kind: str, token: Optional[str], origin: Optional[str]) -> int:
        grant, exp = await verified_caller(kind, token, origin)
        await authorise(grant, dialog_id)
        return exp

    await state["legacy"].serve(ws, kind, dialog_id, check)


@app.websocket("/ws/dialogs/{dialog_id}")
async def admin_socket(ws: WebSocket, dialog_id: str) -> None:
    await legacy_socket(ws, "admin", dialog_id)


@app.websocket("/ws/widget/dialogs/{dialog_id}")
async def widget_socket(ws: WebSocket, dialog_id: str) -> None:
    await legacy_socket(ws, "widget", dialog_id)


@app.websocket("/ws/site/dialogs/{dialog_id}")
async def site_socket(ws: WebSocket, dialog_id: str) -> None:
    await legacy_socket(ws, "site", dialog_id)
