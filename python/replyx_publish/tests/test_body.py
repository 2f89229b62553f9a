"""Validation: the keyword API and the body parser against the conformance fixture, without Redis."""

from __future__ import annotations

import pytest

from conftest import PUBLISHED, REFUSED, case_id, revive
from replyx_publish import PublishValidationError, parse_publish_body, publish_input

KWARGS = {"dialog_id", "type", "data", "audience", "idempotency_key"}


def kwargs_form(body: object) -> bool:
    """Bodies the keyword API can express: an object with the required keys, no unknown ones, no null options."""
    return (
        isinstance(body, dict)
        and {"dialog_id", "type", "data"} <= body.keys() <= KWARGS
        and all(body.get(k, 0) is not None for k in ("audience", "idempotency_key"))
    )


@pytest.mark.parametrize("case", REFUSED, ids=case_id)
def test_refused_like_the_gateway(case: dict) -> None:
    with pytest.raises(PublishValidationError) as err:
        parse_publish_body(revive(case["body"]))
    assert str(err.value) == case["error"]
    if kwargs_form(case["body"]):
        with pytest.raises(PublishValidationError) as kw_err:
            publish_input(**revive(case["body"]))
        assert str(kw_err.value) == case["error"]


@pytest.mark.parametrize("case", PUBLISHED, ids=case_id)
def test_accepted_like_the_gateway(case: dict) -> None:
    event = parse_publish_body(revive(case["body"]))
    assert event.dialog_id == case["frame"]["dialog_id"] and isinstance(event.dialog_id, int)
    assert ",".join(event.audience) == case["audience"]


def test_field_and_reason_are_separate() -> None:
    with pytest.raises(PublishValidationError) as err:
        publish_input(5, "m", 1, audience=["admin", "x"])
    assert (err.value.field, err.value.reason) == ("audience.1", "must be admin, widget or site")
    assert isinstance(err.value, ValueError)


def test_none_leaves_audience_and_key_out() -> None:
    event = publish_input(5, "m", 1, audience=None, idempotency_key=None)
    assert event.audience == () and event.idempotency_key is None


def test_a_tuple_audience_is_an_array() -> None:
    assert publish_input(5, "m", 1, audience=("site",)).audience == ("site",)
