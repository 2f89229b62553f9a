"""Shared fixtures: the conformance cases, the live Redis and gateway the suite is pointed at,
and a results file for the vitest wrapper (python/replyx_publish/pytest.test.ts)."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
import redis

REPO = Path(__file__).resolve().parents[3]
FIXTURE = json.loads((REPO / "test" / "fixtures" / "publish-conformance.json").read_text(encoding="utf-8"))
CASES: List[Dict[str, Any]] = FIXTURE["cases"]
PUBLISHED = [c for c in CASES if "frame" in c]
REFUSED = [c for c in CASES if "error" in c]

#: Environment the live tests need; the vitest wrapper starts Redis and a gateway and sets them.
LIVE_ENV = ("REPLYX_TEST_REDIS_URL", "REPLYX_TEST_GATEWAY_URL", "REPLYX_TEST_PUBLISH_KEY")


def revive(value: Any) -> Any:
    """The fixture's ``{"$js": ...}`` markers as the Python values they stand for."""
    if isinstance(value, list):
        return [revive(v) for v in value]
    if isinstance(value, dict):
        marker = value.get("$js")
        if marker == "NaN":
            return float("nan")
        if marker == "Infinity":
            return float("inf")
        if marker == "-Infinity":
            return float("-inf")
        if marker == "Date":
            return dt.datetime.fromisoformat(value["iso"].replace("Z", "+00:00"))
        if marker is not None:
            raise ValueError(f"unknown fixture marker {marker}")
        return {k: revive(v) for k, v in value.items()}
    return value


def case_id(case: Dict[str, Any]) -> str:
    """A readable test id for a fixture case."""
    return case["name"]


@pytest.fixture(scope="session")
def live() -> Dict[str, str]:
    """URLs and key of the live Redis and gateway (skips when the suite runs without them)."""
    missing = [k for k in LIVE_ENV if not os.environ.get(k)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (npx vitest run python/replyx_publish/pytest.test.ts sets them)")
    return {k: os.environ[k] for k in LIVE_ENV}


@pytest.fixture()
def redis_url(live: Dict[str, str]) -> str:
    return live["REPLYX_TEST_REDIS_URL"]


@pytest.fixture()
def observe(redis_url: str) -> Iterator[Callable[[int, Callable[[], str]], Dict[str, Any]]]:
    """Subscribes to a dialog, runs a publish, and returns what its clients receive."""
    reader = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)

    def run(dialog_id: int, publish: Callable[[], str]) -> Dict[str, Any]:
        sub = reader.pubsub()
        sub.subscribe(f"replyx:dialog:{dialog_id}")
        try:
            # SUBSCRIBE is only sent above; publishing before Redis confirmed it could miss the event.
            deadline = time.monotonic() + 5
            while (m := sub.get_message(timeout=0.1)) is None or m["type"] != "subscribe":
                assert time.monotonic() < deadline, "no subscribe confirmation"
            event_id = publish()
            message = None
            while message is None and time.monotonic() < deadline + 5:
                m = sub.get_message(timeout=0.1)
                if m and m["type"] == "message" and m["data"].startswith(f"{event_id}|"):
                    message = m["data"]
            assert message is not None, f"no channel message for {event_id}"
        finally:
            sub.close()
        _, audience, frame = message.split("|", 2)
        [(_, fields)] = reader.xrange(f"replyx:dialog:{dialog_id}:events", event_id, event_id)
        stored = json.loads('{"id":"%s",%s}' % (event_id, fields["body"]))
        return {"id": event_id, "live": json.loads(frame), "audience": audience, "stored": stored, "stored_audience": fields["aud"]}

    yield run
    reader.close()


def expect_frame(case: Dict[str, Any], seen: Dict[str, Any]) -> None:
    """The fixture's expectation for a published case."""
    import re

    assert re.fullmatch(r"\d+-\d+", seen["id"])
    live_frame = dict(seen["live"])
    assert isinstance(live_frame.pop("ts"), int)
    assert live_frame == {"id": seen["id"], **case["frame"]}
    assert seen["stored"] == seen["live"]
    assert seen["audience"] == case["audience"]
    assert seen["stored_audience"] == case["audience"]


# --- results for the vitest wrapper: one JSON line per test, read by pytest.test.ts
_results: List[Dict[str, Any]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        _results.append({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome, "longrepr": str(report.longrepr or "")[-4000:]})


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("REPLYX_PYTEST_RESULTS")
    if target:
        Path(target).write_text(json.dumps(_results), encoding="utf-8")
