"""Field readers and exact JSON: times, decimals, ids and JSON that is not JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.adapters.exchanges import fields
from tickpipe.adapters.exchanges.decimal_json import loads_exact
from tickpipe.adapters.exchanges.frames import FrameRejected, RejectReason
from tickpipe.core.trade import datetime_to_time_us, format_time_us


@pytest.mark.parametrize(
    ("text", "expected_us"),
    [
        ("2023-09-25T07:49:37.708706Z", 1_695_628_177_708_706),
        ("2023-09-25T07:49:37Z", 1_695_628_177_000_000),
        ("2023-09-25T07:49:37.7Z", 1_695_628_177_700_000),
        ("2023-02-09T20:19:35.39625135Z", 1_675_973_975_396_251),  # nanoseconds are cut
        ("2023-09-25T09:49:37.708706+02:00", 1_695_628_177_708_706),
        ("2023-09-25T02:49:37.708706-05:00", 1_695_628_177_708_706),
    ],
)
def test_rfc3339_times_become_utc_microseconds(text: str, expected_us: int) -> None:
    """Fractions up to nanoseconds, Z or numeric offsets."""
    assert fields.rfc3339_to_us(text) == expected_us


@pytest.mark.parametrize(
    "text", ["2023-02-30T00:00:00Z", "2023-09-25 07:49:37", "yesterday", 1695628177, None]
)
def test_impossible_or_unzoned_times_are_rejected(text: object) -> None:
    """A time without a zone is ambiguous; February 30th does not exist."""
    with pytest.raises(FrameRejected) as caught:
        fields.rfc3339_to_us(text)
    assert caught.value.reason is RejectReason.INVALID_TIME


@pytest.mark.parametrize(
    "value", ["65000.10", Decimal("0.1"), Decimal("1E-8"), 3, "1e-30", "9.9e30"]
)
def test_exact_decimals_are_kept_as_received(value: object) -> None:
    """Strings, exact JSON numbers and integers -> the same Decimal, digits and exponent."""
    number = fields.exact_decimal(value, RejectReason.INVALID_PRICE)
    assert number.as_tuple() == Decimal(value).as_tuple()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    ["0", "-1", "NaN", "Infinity", "sNaN", "1e-31", "1e31", "", "1,5", True, None, [1], {}],
)
def test_unusable_numbers_are_rejected_with_the_given_reason(value: object) -> None:
    """Non-positive, non-finite, absurdly small or large, or not numbers at all."""
    with pytest.raises(FrameRejected) as caught:
        fields.exact_decimal(value, RejectReason.INVALID_QUANTITY)
    assert caught.value.reason is RejectReason.INVALID_QUANTITY


def test_trade_ids_are_text() -> None:
    """Integers become their decimal text; bools, negatives and blanks are refused."""
    assert fields.trade_id(12345) == "12345"
    assert fields.trade_id("abc-1") == "abc-1"
    for bad in (True, -1, "", "x" * 65, "a\nb", 1.5):
        with pytest.raises(FrameRejected):
            fields.trade_id(bad)


def test_json_numbers_are_decoded_from_their_own_text() -> None:
    """65000.10 keeps its trailing zero, 1e-8 its exponent; integers stay int."""
    value = loads_exact('{"a":65000.10,"b":1e-8,"c":4665906,"d":0.1}')
    assert value["a"].as_tuple() == Decimal("65000.10").as_tuple()
    assert value["b"].as_tuple() == Decimal("1e-8").as_tuple()
    assert value["c"] == 4665906
    assert isinstance(value["c"], int)
    assert value["d"] == Decimal("0.1")


def test_nan_and_infinity_literals_become_decimals_to_be_rejected_later() -> None:
    """Python's json accepts NaN; as Decimal NaN it is then refused as an invalid price."""
    value = loads_exact('{"p":NaN,"q":-Infinity}')
    assert value["p"].is_nan()
    assert value["q"].is_infinite()


@pytest.mark.parametrize(
    "frame",
    ["{", "", b"\xff\xfe\xfd", "[" * 100_000 + "]" * 100_000, "1" * 5_000, '{"a":}'],
)
def test_what_is_not_json_is_rejected_as_invalid_json(frame: str | bytes) -> None:
    """Malformed text, bad UTF-8, absurd nesting and integers past the digit limit."""
    with pytest.raises(FrameRejected) as caught:
        loads_exact(frame)
    assert caught.value.reason is RejectReason.INVALID_JSON


@given(moment=st.datetimes(min_value=datetime(2009, 1, 1), max_value=datetime(2100, 1, 1)))
def test_any_formatted_time_reads_back_to_the_same_microsecond(moment: datetime) -> None:
    """format_time_us and rfc3339_to_us are inverses (against the core's own conversion)."""
    time_us = datetime_to_time_us(moment.replace(tzinfo=UTC))
    assert fields.rfc3339_to_us(format_time_us(time_us)) == time_us
