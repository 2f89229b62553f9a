"""The conformance fixture against the Python publishers: sync and asyncio through Redis, and the
HTTP client through a real gateway. Same frames, same errors as the TypeScript runners."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict

import pytest
import redis

from conftest import PUBLISHED, REFUSED, case_id, expect_frame, revive
from replyx_publish import AsyncPublisher, HttpPublisher, PublishValidationError, Publisher, parse_publish_body
from test_body import kwargs_form

Publish = Callable[[Dict[str, Any]], Any]


def forget_key(redis_url: str, body: Dict[str, Any]) -> None:
    """Drops the case's idempotency key, so each runner starts with a fresh window."""
    if isinstance(body.get("idempotency_key"), str):
        with redis.Redis.from_url(redis_url, socket_timeout=5) as r:
            r.delete(f"replyx:dialog:{int(body['dialog_id'])}:idem:{body['idempotency_key']}")


def stream_length(redis_url: str, dialog_id: int) -> int:
    with redis.Redis.from_url(redis_url, socket_timeout=5) as r:
        return int(r.xlen(f"replyx:dialog:{dialog_id}:events"))


@pytest.fixture(params=["sync", "async", "http"])
def publish(request: pytest.FixtureRequest, live: Dict[str, str]) -> Publish:
    """One publisher's ``publish(**body)``, run to completion."""
    url = live["REPLYX_TEST_REDIS_URL"]
    if request.param == "sync":
        pub = Publisher.from_url(url)
        request.addfinalizer(pub.close)
        return lambda body: pub.publish(**body)
    if request.param == "http":
        http = HttpPublisher(live["REPLYX_TEST_GATEWAY_URL"], live["REPLYX_TEST_PUBLISH_KEY"])
        return lambda body: http.publish(**body)

    def run_async(body: Dict[str, Any]) -> Any:
        async def once() -> Any:
            pub = AsyncPublisher.from_url(url)
            try:
                return await pub.publish(**body)
            finally:
                await pub.close()

        return asyncio.run(once())

    return run_async


@pytest.mark.parametrize("case", PUBLISHED, ids=case_id)
def test_publishes_like_the_others(case: Dict[str, Any], publish: Publish, observe: Any, redis_url: str, request: pytest.FixtureRequest) -> None:
    body = revive(case["body"])
    forget_key(redis_url, body)
    dialog_id = int(body["dialog_id"])
    results = []
    seen = observe(dialog_id, lambda: results.append(publish(body)) or results[0].id)
    expect_frame(case, seen)
    assert results[0].duplicate is False
    if case.get("repeat"):
        before = stream_length(redis_url, dialog_id)
        again = publish(body)
        assert again.id == seen["id"]
        # The HTTP answer carries the id only; the Redis publishers say it was a duplicate.
        assert again.duplicate is ("http" not in request.node.callspec.id)
        assert stream_length(redis_url, dialog_id) == before


@pytest.mark.parametrize("case", [c for c in REFUSED if kwargs_form(c["body"])], ids=case_id)
def test_refuses_like_the_others(case: Dict[str, Any], publish: Publish) -> None:
    with pytest.raises(PublishValidationError) as err:
        publish(revive(case["body"]))
    assert str(err.value) == case["error"]


@pytest.mark.parametrize("case", [c for c in REFUSED if not kwargs_form(c["body"])], ids=case_id)
def test_bodies_the_keyword_api_cannot_express_are_refused_by_the_parser(case: Dict[str, Any]) -> None:
    with pytest.raises(PublishValidationError) as err:
        parse_publish_body(revive(case["body"]))
    assert str(err.value) == case["error"]
