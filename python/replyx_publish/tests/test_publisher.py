"""The Redis and HTTP publishers against a live Redis and gateway: reply decoding, library
loading, timeouts and the errors a caller sees."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Dict, Iterator

import pytest
import redis
import redis.asyncio

from replyx_publish import (
    AsyncPublisher,
    HttpPublisher,
    LibraryNotLoadedError,
    NotPublishedError,
    PublishAuthError,
    PublishValidationError,
    Publisher,
)
from replyx_publish.library import read_library


@pytest.fixture()
def admin(redis_url: str) -> Iterator["redis.Redis[bytes]"]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture()
def stalled_port() -> Iterator[int]:
    """A server that accepts connections and never answers: a stalled Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except socket.timeout:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    t.join()
    for s in held:
        s.close()
    server.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("decode", [False, True])
def test_sync_reply_read_with_or_without_decode_responses(redis_url: str, decode: bool) -> None:
    pub = Publisher.from_url(redis_url, decode_responses=decode)
    result = pub.publish(123, "message:new", {"text": "hi"})
    assert isinstance(result.id, str) and "-" in result.id and result.duplicate is False
    again = pub.publish(123, "message:new", {"text": "hi"}, idempotency_key=f"d-{decode}-{result.id}")
    assert pub.publish(123, "message:new", {"text": "hi"}, idempotency_key=f"d-{decode}-{result.id}").id == again.id


@pytest.mark.parametrize("decode", [False, True])
def test_async_reply_read_with_or_without_decode_responses(redis_url: str, decode: bool) -> None:
    async def run() -> None:
        pub = AsyncPublisher.from_url(redis_url, decode_responses=decode)
        try:
            first = await pub.publish(123, "message:new", {"n": 1}, idempotency_key=f"a-{decode}-{time.time_ns()}")
            key_again = await asyncio.gather(*(pub.publish(123, "m", 1, idempotency_key=f"g-{decode}-{first.id}") for _ in range(5)))
            assert len({r.id for r in key_again}) == 1 and sum(not r.duplicate for r in key_again) == 1
        finally:
            await pub.close()

    asyncio.run(run())


def test_a_client_without_a_timeout_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="socket_timeout"):
        Publisher(redis.Redis.from_url(redis_url))
    with pytest.raises(ValueError, match="socket_timeout"):
        AsyncPublisher(redis.asyncio.Redis.from_url(redis_url))


def test_a_stalled_redis_fails_within_the_timeout_sync(stalled_port: int) -> None:
    pub = Publisher.from_url(f"redis://127.0.0.1:{stalled_port}", timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(NotPublishedError, match="not confirmed"):
        pub.publish(123, "m", 1)
    assert time.monotonic() - started < 2


def test_a_stalled_redis_fails_within_the_timeout_async(stalled_port: int) -> None:
    async def run() -> float:
        pub = AsyncPublisher.from_url(f"redis://127.0.0.1:{stalled_port}", timeout_s=0.3)
        started = time.monotonic()
        try:
            with pytest.raises(NotPublishedError):
                await pub.publish(123, "m", 1)
        finally:
            await pub.close()
        return time.monotonic() - started

    assert asyncio.run(run()) < 2


def test_an_unreachable_redis_is_not_published() -> None:
    with pytest.raises(NotPublishedError):
        Publisher.from_url(f"redis://127.0.0.1:{closed_port()}", timeout_s=0.5).publish(123, "m", 1)


def test_the_library_is_loaded_when_redis_lost_it(admin: "redis.Redis[bytes]", redis_url: str) -> None:
    pub = Publisher.from_url(redis_url)
    pub.publish(123, "m", 1)  # checked and cached
    admin.execute_command("FUNCTION", "FLUSH")
    assert pub.publish(123, "m", 2).id
    assert admin.execute_command("FCALL", "replyx_version", 0) == str(read_library().version).encode()


def test_an_older_library_is_replaced(admin: "redis.Redis[bytes]", redis_url: str) -> None:
    current = read_library()
    assert current is not None
    older = current.source.replace(f"local VERSION = '{current.version}'", f"local VERSION = '{current.version - 1}'")
    admin.execute_command("FUNCTION", "LOAD", "REPLACE", older)
    async def run() -> None:
        pub = AsyncPublisher.from_url(redis_url)
        try:
            await pub.publish(123, "m", 1)
        finally:
            await pub.close()
    asyncio.run(run())
    assert int(admin.execute_command("FCALL", "replyx_version", 0)) == current.version


def test_without_the_file_a_missing_library_is_a_clear_error(admin: "redis.Redis[bytes]", redis_url: str, tmp_path: Any) -> None:
    admin.execute_command("FUNCTION", "FLUSH")
    try:
        pub = Publisher(redis.Redis.from_url(redis_url, socket_timeout=2), library_path=tmp_path / "absent.lua")
        with pytest.raises(LibraryNotLoadedError, match="start a gateway"):
            pub.publish(123, "m", 1)
    finally:
        Publisher.from_url(redis_url).load_library()


def test_a_publisher_only_user_cannot_load_and_says_so(admin: "redis.Redis[bytes]", redis_url: str) -> None:
    admin.execute_command(
        "ACL", "SETUSER", "py-publisher", "on", ">py-publisher-pass", "-@all",
        "+fcall", "+get", "+set", "+xadd", "+expire", "+publish", "+time", "~replyx:*", "&replyx:*",
    )
    url = redis_url.replace("redis://", "redis://py-publisher:py-publisher-pass@")
    try:
        assert Publisher.from_url(url).publish(123, "m", 1).id  # loaded already: FCALL suffices
        admin.execute_command("FUNCTION", "FLUSH")
        with pytest.raises(LibraryNotLoadedError, match=r"may not load it"):
            Publisher.from_url(url).publish(123, "m", 1)
    finally:
        Publisher.from_url(redis_url).load_library()
        admin.execute_command("ACL", "DELUSER", "py-publisher")


def test_http_answers_map_to_the_same_exceptions(live: Dict[str, str]) -> None:
    gateway = live["REPLYX_TEST_GATEWAY_URL"]
    with pytest.raises(PublishAuthError, match="X-Publish-Key"):
        HttpPublisher(gateway, "wrong-key-0123456789abcdef-0123456789").publish(123, "m", 1)
    with pytest.raises(PublishValidationError, match="PUBLISH_MAX_BYTES"):
        HttpPublisher(gateway, live["REPLYX_TEST_PUBLISH_KEY"]).publish(123, "m", "x" * 300_000)
    with pytest.raises(NotPublishedError, match="not reached"):
        HttpPublisher(f"http://127.0.0.1:{closed_port()}", "k").publish(123, "m", 1)


def test_http_validates_before_the_network() -> None:
    # Nothing listens there: a validation error proves no request was needed.
    with pytest.raises(PublishValidationError, match="^audience: must be an array"):
        HttpPublisher(f"http://127.0.0.1:{closed_port()}", "k").publish(123, "m", 1, audience="admin")  # type: ignore[arg-type]
