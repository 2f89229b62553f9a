"""JSON encoding of what only Python can hand over: handled the way JSON.stringify would, or refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal

import pydantic
import pytest

from replyx_publish import PublishValidationError, encode_data


def refused(data: object) -> PublishValidationError:
    with pytest.raises(PublishValidationError) as err:
        encode_data(data)
    return err.value


def test_compact_and_unescaped_like_json_stringify() -> None:
    assert encode_data({"a": [1, 2.5, None, True], "t": "é 😀"}) == '{"a":[1,2.5,null,true],"t":"é 😀"}'


def test_nan_and_infinities_are_null() -> None:
    assert encode_data([float("nan"), float("inf"), -float("inf")]) == "[null,null,null]"


def test_aware_datetimes_are_utc_with_milliseconds() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert json.loads(encode_data(dt.datetime(2026, 12, 2, 16, 13, 29, 123999, tzinfo=berlin))) == "2026-12-02T15:13:29.123Z"


def test_naive_datetimes_are_refused_with_their_path() -> None:
    err = refused({"items": [{"at": dt.datetime(2026, 1, 1)}]})
    assert err.field == "data.items.0.at"
    assert "naive datetime" in err.reason and "timezone.utc" in err.reason


def test_dates_uuids_enums_tuples_and_integer_keys() -> None:
    class Color(enum.Enum):
        RED = "red"

    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    out = json.loads(encode_data({"d": dt.date(2026, 12, 2), "u": u, "c": Color.RED, "t": (1, 2), 7: "seven"}))
    assert out == {"d": "2026-12-02", "u": str(u), "c": "red", "t": [1, 2], "7": "seven"}


def test_pydantic_models_and_dataclasses_by_their_fields() -> None:
    class Message(pydantic.BaseModel):
        text: str
        at: dt.datetime
        score: float

    @dataclasses.dataclass
    class Point:
        x: int
        y: float

    msg = Message(text="hi", at=dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc), score=float("nan"))
    out = json.loads(encode_data({"m": msg, "p": Point(1, 2.5)}))
    assert out["m"]["text"] == "hi" and out["m"]["score"] is None and out["m"]["at"].startswith("2026-12-02T00:00:00")
    assert out["p"] == {"x": 1, "y": 2.5}


@pytest.mark.parametrize(
    "value, words",
    [
        (Decimal("1.10"), "Decimal"),
        ({1, 2}, "set"),
        (b"raw", "bytes"),
        (2**60, "2^53-1"),
        (-(2**53), "2^53-1"),
        (object(), "object is not JSON"),
    ],
)
def test_values_without_a_faithful_json_form_are_refused(value: object, words: str) -> None:
    err = refused({"v": value})
    assert err.field == "data.v" and words in str(err)


def test_non_string_keys_and_cycles_are_refused() -> None:
    assert "not a string" in refused({(1, 2): 1}).reason
    loop: list = []
    loop.append(loop)
    assert refused(loop).reason == "circular reference"


def test_a_shared_value_is_not_a_cycle() -> None:
    shared = {"a": 1}
    assert json.loads(encode_data([shared, shared])) == [{"a": 1}, {"a": 1}]


def test_lone_surrogates_are_escaped_as_json_stringify_does() -> None:
    assert encode_data("x\ud800") == '"x\\ud800"'
