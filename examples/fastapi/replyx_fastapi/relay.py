"""The transactional outbox's relay (as examples/backend/src/outbox.ts): a stored message has an
outbox row; the request that stored it publishes at once, and a relay loop in every worker
publishes what is left (Redis was down, or the worker died). Rows are claimed with
``FOR UPDATE SKIP LOCKED``, so workers never publish one row at the same time, and every publish
carries the idempotency key ``message:<id>:<created_at>`` (the reference backend's key, so a row
published twice is still one event, and a recreated database's ids never meet keys Redis remembers)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from replyx_publish import AsyncPublisher, PublishError, PublishResult, encode_data

from . import db

log = logging.getLogger("replyx.backend")

#: The event type every stored message is published as.
MESSAGE_EVENT = "message:new"
CLEANUP_EVERY_S = 60.0
BATCH_SIZE = 100
RETRY_BASE_MS = 100


def message_idempotency_key(message_id: int, created_at: Any) -> str:
    """The idempotency key a message is published with: its id and creation time, as the reference backend writes it."""
    return f"message:{message_id}:{json.loads(encode_data(created_at))}"


def message_data(row: Dict[str, Any]) -> Dict[str, Any]:
    """An event's ``data``: the stored message without its event id (the frame's own ``id``)."""
    return {k: v for k, v in row.items() if k != "event_id"}


def retry_delay_ms(attempts: int, base_ms: int, max_ms: int) -> int:
    """Delay before retry ``attempts + 1``: doubling from ``base_ms``, capped at ``max_ms``."""
    return min(max_ms, base_ms * 2 ** min(max(0, attempts), 30))


class Relay:
    """Publishes messages now (the writer's fast path) and keeps publishing the outbox's leftovers."""

    def __init__(
        self,
        pool: db.Pool,
        publisher: AsyncPublisher,
        poll_ms: int,
        retry_max_ms: int,
        retention_s: int,
        on_published: Callable[[Dict[str, Any], str], Awaitable[None]],
    ) -> None:
        self._pool = pool
        # Called once per message published for the first time (legacy /ws/ delivers it locally).
        self._on_published = on_published
        self._publisher = publisher
        self._poll_s = poll_ms / 1000
        self._retry_max_ms = retry_max_ms
        self._retention_s = retention_s
        self._task: Optional[asyncio.Task[None]] = None
        self._last_cleanup = 0.0
        self._last_warning = 0.0

    async def _publish(self, row: Dict[str, Any]) -> str:
        result: PublishResult = await self._publisher.publish(
            int(row["dialog_id"]), MESSAGE_EVENT, message_data(row), idempotency_key=message_idempotency_key(int(row["id"]), row["created_at"])
        )
        if not result.duplicate:
            await self._on_published(row, result.id)
        return result.id

    async def publish_now(self, row: Dict[str, Any]) -> Optional[str]:
        """The event id, or None when publishing failed and the relay will retry (never raises)."""
        try:
            event_id = await self._publish(row)
        except PublishError as err:
            self._warn(f"publish failed; the outbox relay retries: {err}")
            return None
        try:
            async with self._pool.connection() as c:
                await db.mark_published(c, [(int(row["id"]), event_id)])
        except Exception as err:  # the relay publishes it again, idempotently
            self._warn(f"could not mark a published message; the relay re-publishes it idempotently: {err}")
        return event_id

    async def run_pass(self) -> int:
        """One pass over due rows: claimed, published in id order, marked; how many were published."""
        async with self._pool.connection() as c:
            async with c.transaction():
                due = await (await c.execute(
                    f"""SELECT {', '.join('m.' + col for col in db.MESSAGE_COLUMNS.split(', '))}, o.attempts
                          FROM message_outbox o JOIN messages m ON m.id = o.message_id
                         WHERE o.next_attempt_at <= now()
                         ORDER BY o.message_id LIMIT %s FOR UPDATE OF o SKIP LOCKED""",
                    (BATCH_SIZE,),
                )).fetchall()
                done: List[Tuple[int, str]] = []
                for i, row in enumerate(due):
                    attempts = row.pop("attempts")
                    try:
                        done.append((int(row["id"]), await self._publish(row)))
                    except PublishError as err:
                        # Redis is most likely away: the rest of the batch waits with this row.
                        ids = [int(r["id"]) for r in due[i:]]
                        delay = retry_delay_ms(attempts, RETRY_BASE_MS, self._retry_max_ms)
                        await c.execute(
                            "UPDATE message_outbox SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => %s), last_error = %s WHERE message_id = ANY(%s::bigint[])",
                            (delay / 1000, str(err)[:500], ids),
                        )
                        self._warn(f"outbox relay: publish failed; {len(ids)} message(s) retried in {delay} ms: {err}")
                        break
                await db.mark_published(c, done)
        return len(done)

    async def _loop(self) -> None:
        while True:
            pause = self._poll_s
            try:
                if await self.run_pass() >= BATCH_SIZE:
                    pause = 0
                if time.monotonic() - self._last_cleanup > CLEANUP_EVERY_S:
                    self._last_cleanup = time.monotonic()
                    async with self._pool.connection() as c:
                        await c.execute("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => %s)", (self._retention_s,))
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._warn(f"outbox relay pass failed (database); retrying: {err}")
            await asyncio.sleep(pause)

    def start(self) -> None:
        """Starts the loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stops the loop (a pass in progress is cancelled; its transaction rolls back)."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def _warn(self, message: str) -> None:
        # One warning per 5 s: an outage must not flood the log at the poll rate.
        now = time.monotonic()
        if now - self._last_warning >= 5:
            self._last_warning = now
            log.warning(message)
