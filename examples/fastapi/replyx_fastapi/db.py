"""Postgres for the API (psycopg 3, async): a small per-worker connection pool and one function
per operation, parameters always bound. The schema is the reference backend's
(examples/backend/migrations), so both backends can serve the same database."""

from __future__ import annotations

import asyncio
import hashlib
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Tuple

import psycopg
from psycopg.rows import dict_row

from .access import DialogAccess

MESSAGE_COLUMNS = "id, dialog_id, sender, text, event_id, created_at"


class Pool:
    """At most ``size`` connections per worker, reused; a connection that failed is dropped."""

    def __init__(self, url: str, size: int, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._idle: List[psycopg.AsyncConnection[Dict[str, Any]]] = []
        self._slots = asyncio.Semaphore(size)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator["psycopg.AsyncConnection[Dict[str, Any]]"]:
        """A connection for one operation (autocommit; use ``conn.transaction()`` for more)."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(
                        self._url, autocommit=True, row_factory=dict_row, connect_timeout=max(1, int(self._timeout_s)),
                        options=f"-c statement_timeout={int(self._timeout_s * 1000)}",
                    ),
                    self._timeout_s + 1,
                )
            healthy = False
            try:
                yield conn
                healthy = not conn.closed
            finally:
                if healthy:
                    self._idle.append(conn)
                else:
                    await conn.close()

    async def close(self) -> None:
        """Closes the idle connections."""
        for conn in self._idle:
            await conn.close()
        self._idle.clear()


def visitor_key_hash(key: str) -> bytes:
    """The SHA-256 a visitor key is stored as (keys are 256 random bits: no slow hash needed)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


async def dialog_access(pool: Pool, dialog_id: int) -> Optional[DialogAccess]:
    """A dialog's owner and allowed domains, from the view the gateway reads."""
    async with pool.connection() as c:
        row = await (await c.execute(
            "SELECT dialog_id, assistant_id, user_id, allowed_domains FROM replyx_dialog_access WHERE dialog_id = %s", (dialog_id,)
        )).fetchone()
    return row and DialogAccess(int(row["dialog_id"]), int(row["assistant_id"]), int(row["user_id"]), list(row["allowed_domains"]))


async def assistant_by_id(pool: Pool, assistant_id: int) -> Optional[Tuple[int, List[str]]]:
    """An assistant's owner and allowed domains."""
    async with pool.connection() as c:
        row = await (await c.execute("SELECT user_id, allowed_domains FROM assistants WHERE id = %s", (assistant_id,))).fetchone()
    return row and (int(row["user_id"]), list(row["allowed_domains"]))


async def is_site_token_revoked(pool: Pool, jti: str) -> bool:
    """True when a site token id is revoked (the view the gateway reads)."""
    async with pool.connection() as c:
        return (await (await c.execute("SELECT 1 FROM replyx_revoked_site_tokens WHERE jti = %s", (jti,))).fetchone()) is not None


async def visitor_dialog(pool: Pool, assistant_id: int, key_hash: bytes) -> Optional[int]:
    """The dialog of an assistant whose visitor key hashes to ``key_hash``."""
    async with pool.connection() as c:
        row = await (await c.execute("SELECT id FROM dialogs WHERE visitor_key_hash = %s AND assistant_id = %s", (key_hash, assistant_id))).fetchone()
    return row and int(row["id"])


async def create_visitor_dialog(pool: Pool, assistant_id: int, key_hash: bytes) -> int:
    """A new dialog for a widget visitor, storing only the hash of its key."""
    async with pool.connection() as c:
        row = await (await c.execute("INSERT INTO dialogs (assistant_id, visitor_key_hash) VALUES (%s, %s) RETURNING id", (assistant_id, key_hash))).fetchone()
    return int(row["id"])  # type: ignore[index]


async def register_site_token(pool: Pool, jti: str, user_id: int, assistant_id: int, dialog_id: Optional[int], exp: int) -> None:
    """Registers an issued site token (who may revoke it, until when it matters)."""
    async with pool.connection() as c:
        await c.execute(
            "INSERT INTO site_tokens (jti, user_id, assistant_id, dialog_id, expires_at) VALUES (%s, %s, %s, %s, to_timestamp(%s))",
            (jti, user_id, assistant_id, dialog_id, exp),
        )


async def revoke_site_token(pool: Pool, user_id: int, jti: str) -> bool:
    """Revokes one of the user's site tokens; False when the user has no such token."""
    async with pool.connection() as c:
        done = await (await c.execute(
            """INSERT INTO site_token_revocations (jti, expires_at)
               SELECT jti, expires_at FROM site_tokens WHERE jti = %s AND user_id = %s
               ON CONFLICT (jti) DO NOTHING RETURNING jti""",
            (jti, user_id),
        )).fetchone()
        if done is None and (await (await c.execute("SELECT 1 FROM site_tokens WHERE jti = %s AND user_id = %s", (jti, user_id))).fetchone()) is None:
            return False
        await c.execute("DELETE FROM site_token_revocations WHERE expires_at < now() - interval '1 day'")
    return True


@dataclass(frozen=True)
class IdempotencyClaim:
    """An Idempotency-Key as stored: who and where, the key, and a hash of what was asked."""

    scope: str
    key: str
    request_hash: bytes
    retention_s: int


def request_hash(route: str, body: Any) -> bytes:
    """SHA-256 of the route and body, written as the reference backend writes them (JSON.stringify)."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{route}\n{text}".encode("utf-8")).digest()


async def store_message(
    pool: Pool, dialog_id: int, sender: str, text: str, claim: Optional[IdempotencyClaim], publish_delay_ms: int
) -> Tuple[str, Optional[Dict[str, Any]]]:
    """Stores a message and its outbox row in one transaction: (``stored`` | ``replayed`` | ``key-reused``, row)."""
    async with pool.connection() as c:
        replay_of: Optional[int] = None
        reused = False
        async with c.transaction() as tx:
            if claim:
                await c.execute(
                    "DELETE FROM idempotency_keys WHERE scope = %s AND key = %s AND created_at < now() - make_interval(secs => %s)",
                    (claim.scope, claim.key, claim.retention_s),
                )
                # Waits while another transaction holds the same key; then conflicts or inserts.
                claimed = await (await c.execute(
                    "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES (%s, %s, %s) ON CONFLICT (scope, key) DO NOTHING RETURNING 1",
                    (claim.scope, claim.key, claim.request_hash),
                )).fetchone()
                if claimed is None:
                    first = await (await c.execute(
                        "SELECT request_hash, message_id FROM idempotency_keys WHERE scope = %s AND key = %s", (claim.scope, claim.key)
                    )).fetchone()
                    if first is None or first["message_id"] is None or bytes(first["request_hash"]) != claim.request_hash:
                        reused = True
                    else:
                        replay_of = int(first["message_id"])
                    raise psycopg.Rollback(tx)
            row = await (await c.execute(
                f"INSERT INTO messages (dialog_id, sender, text) VALUES (%s, %s, %s) RETURNING {MESSAGE_COLUMNS}", (dialog_id, sender, text)
            )).fetchone()
            assert row is not None
            await c.execute(
                "INSERT INTO message_outbox (message_id, next_attempt_at) VALUES (%s, now() + make_interval(secs => %s))",
                (row["id"], publish_delay_ms / 1000),
            )
            if claim:
                await c.execute("UPDATE idempotency_keys SET message_id = %s WHERE scope = %s AND key = %s", (row["id"], claim.scope, claim.key))
            return "stored", row
    if reused:
        return "key-reused", None
    message = await message_by_id(pool, replay_of) if replay_of is not None else None
    return ("replayed", message) if message else ("key-reused", None)


async def message_by_id(pool: Pool, message_id: int) -> Optional[Dict[str, Any]]:
    """One stored message."""
    async with pool.connection() as c:
        return await (await c.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = %s", (message_id,))).fetchone()


async def mark_published(conn: "psycopg.AsyncConnection[Any]", published: Sequence[Tuple[int, str]]) -> None:
    """Records event ids of published messages and drops their outbox rows, in one statement."""
    if not published:
        return
    await conn.execute(
        """WITH p AS (SELECT * FROM unnest(%s::bigint[], %s::text[]) AS t(id, event_id)),
                done AS (DELETE FROM message_outbox o USING p WHERE o.message_id = p.id)
           UPDATE messages m SET event_id = p.event_id FROM p WHERE m.id = p.id""",
        ([m for m, _ in published], [e for _, e in published]),
    )


async def clear_probe_dialog(pool: Pool, dialog_id: int) -> Optional[int]:
    """Deletes every message of a probe dialog; how many, or None when the dialog is not a probe dialog."""
    async with pool.connection() as c:
        row = await (await c.execute("SELECT probe FROM dialogs WHERE id = %s", (dialog_id,))).fetchone()
        if not row or row["probe"] is not True:
            return None
        return (await c.execute("DELETE FROM messages WHERE dialog_id = %s", (dialog_id,))).rowcount


async def list_messages(pool: Pool, dialog_id: int, since: int, limit: int) -> List[Dict[str, Any]]:
    """Messages of a dialog with id greater than ``since``, oldest first."""
    async with pool.connection() as c:
        return await (await c.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE dialog_id = %s AND id > %s ORDER BY id LIMIT %s", (dialog_id, since, limit)
        )).fetchall()
