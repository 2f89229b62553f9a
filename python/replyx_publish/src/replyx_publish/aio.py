"""Publishing through Redis from asyncio code (FastAPI ``async def`` endpoints): the twin of
:class:`replyx_publish.Publisher` over ``redis.asyncio``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import redis
import redis.asyncio

from .body import publish_input
from .call import (
    HistorySettings,
    PublishResult,
    cannot_load,
    fcall_args,
    is_missing_function,
    is_no_permission,
    loaded_version,
    publish_result,
    require_timeout,
)
from .errors import NotPublishedError
from .library import VERSION_FUNCTION, read_library
from .publisher import DEFAULT_TIMEOUT_S


class AsyncPublisher:
    """Stores and publishes events atomically through the ``replyx`` function library, awaitably."""

    def __init__(
        self,
        client: "redis.asyncio.Redis[Any]",
        *,
        settings: HistorySettings = HistorySettings(),
        library_path: Optional[Union[str, Path]] = None,
    ) -> None:
        require_timeout(client)
        self._redis = client
        self._settings = settings
        self._library = read_library(library_path)
        self._checked = False
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, settings: HistorySettings = HistorySettings(), **options: Any
    ) -> "AsyncPublisher":
        """A publisher with its own client whose connect and command timeouts are ``timeout_s``."""
        options.setdefault("socket_timeout", timeout_s)
        options.setdefault("socket_connect_timeout", timeout_s)
        return cls(redis.asyncio.Redis.from_url(url, **options), settings=settings)

    async def close(self) -> None:
        """Closes the client's connections."""
        await self._redis.close()

    async def load_library(self) -> None:
        """Loads the library (FUNCTION LOAD REPLACE) unless Redis has this version or a newer one."""
        loaded: Optional[int] = None
        try:
            loaded = loaded_version(await self._redis.execute_command("FCALL", VERSION_FUNCTION, 0))
        except redis.ResponseError as err:
            if not is_missing_function(err):
                raise
        if self._library is None:
            if loaded is None:
                raise cannot_load(None, None, "no library file")
            return
        if loaded is not None and loaded >= self._library.version:
            return
        try:
            await self._redis.execute_command("FUNCTION", "LOAD", "REPLACE", self._library.source)
        except redis.ResponseError as err:
            if not is_no_permission(err):
                raise
            raise cannot_load(self._library, loaded, str(err)) from err

    async def _ensure(self) -> None:
        if self._checked:
            return
        async with self._lock:
            if not self._checked:
                await self.load_library()
                self._checked = True

    async def publish(
        self,
        dialog_id: int,
        type: str,
        data: Any,
        *,
        audience: Optional[Sequence[str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> PublishResult:
        """Stores and publishes one event; returns its id (see :meth:`Publisher.publish`)."""
        event = publish_input(dialog_id, type, data, audience, idempotency_key)
        command = fcall_args(event, self._settings)
        try:
            await self._ensure()
            try:
                reply = await self._redis.execute_command(*command)
            except redis.ResponseError as err:
                if not is_missing_function(err):
                    raise
                self._checked = False
                await self._ensure()
                reply = await self._redis.execute_command(*command)
        except NotPublishedError:
            raise
        except redis.RedisError as err:
            raise NotPublishedError(f"event not confirmed by Redis: {err}") from err
        return publish_result(reply)
