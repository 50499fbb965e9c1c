"""The trade record: validation, exact decimals, time formatting."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.strategies import trades
from tickpipe.core.trade import (
    MAX_CLOCK_SKEW_US,
    MAX_DECIMAL_DIGITS,
    MAX_TRADE_ID_LENGTH,
    MIN_TIME_US,
    InvalidTrade,
    Side,
    Trade,
    datetime_to_time_us,
    format_time_us,
    new_trade,
    plain_decimal_text,
    time_us_to_datetime,
)

NOW_US = 1_700_000_000_000_000
# 9999-12-31T23:59:59.999999Z: the last instant a 4-digit year (fixed-width text) can hold.
LAST_FIXED_WIDTH_US = 253_402_300_799_999_999


def build(**overrides: Any) -> Trade:
    """new_trade with valid defaults and the given fields replaced."""
    fields: dict[str, Any] = {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "trade_id": "12345",
        "price": "65000.10",
        "quantity": "0.00100000",
        "side": "buy",
        "exchange_time_us": NOW_US,
        "ingest_time_us": NOW_US + 1_000,
    }
    fields.update(overrides)
    return new_trade(**fields)


def test_valid_trade_keeps_every_field() -> None:
    """A valid trade is built with its fields as given and the side parsed."""
    trade = build()
    assert trade == Trade(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id="12345",
        price=Decimal("65000.10"),
        quantity=Decimal("0.00100000"),
        side=Side.BUY,
        exchange_time_us=NOW_US,
        ingest_time_us=NOW_US + 1_000,
    )
    assert trade.key == ("binance", "BTCUSDT")


@pytest.mark.parametrize("field", ["price", "quantity"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0", "not positive"),
        ("0.000", "not positive"),
        ("-0", "not positive"),
        ("-1.5", "not positive"),
        ("NaN", "not finite"),
        ("sNaN", "not finite"),
        ("Infinity", "not finite"),
        ("-Infinity", "not finite"),
        ("abc", "not a decimal"),
        ("", "not a decimal"),
        ("1,5", "not a decimal"),
        ("0x10", "not a decimal"),
        ("1" * (MAX_DECIMAL_DIGITS + 1), "digits"),
        ("0." + "1" * (MAX_DECIMAL_DIGITS + 1), "digits"),
        (Decimal(0), "not positive"),
        (Decimal("-3"), "not positive"),
        (Decimal("NaN"), "not finite"),
        (Decimal("Infinity"), "not finite"),
    ],
)
def test_non_positive_non_finite_or_malformed_amounts_are_rejected(
    field: str, value: str | Decimal, reason: str
) -> None:
    """Price and quantity must be positive finite decimals of at most 38 digits."""
    with pytest.raises(InvalidTrade, match=reason) as caught:
        build(**{field: value})
    assert field in str(caught.value)


@pytest.mark.parametrize("field", ["price", "quantity"])
def test_amounts_of_exactly_38_digits_are_accepted(field: str) -> None:
    """The digit limit is inclusive: 38 digits fit NUMERIC and are kept."""
    text = "1234567890.1234567890123456789012345678"
    assert getattr(build(**{field: text}), field) == Decimal(text)


@pytest.mark.parametrize("value", ["1E+1000000", "1E-1000000"])
def test_amounts_of_absurd_magnitude_are_rejected(value: str) -> None:
    """A price far outside any NUMERIC/float range is invalid, however few digits it has."""
    with pytest.raises(InvalidTrade):
        build(price=value)


@pytest.mark.parametrize(
    "text", ["65000.10", "0.00100000", "0.00000001", "1E-8", "100", "1.0", "0.00001234"]
)
def test_decimal_text_is_kept_exactly(text: str) -> None:
    """Trailing zeros and scale survive: '65000.10' stays '65000.10', never a float."""
    trade = build(price=text, quantity=text)
    assert str(trade.price) == str(Decimal(text))
    assert trade.price.as_tuple() == Decimal(text).as_tuple()
    assert trade.quantity.as_tuple() == Decimal(text).as_tuple()


def test_price_65000_10_round_trips_as_text() -> None:
    """The contract's example: '65000.10' is stored and printed as '65000.10'."""
    assert str(build(price="65000.10").price) == "65000.10"


@given(
    st.from_regex(r"(0|[1-9][0-9]{0,17})", fullmatch=True),
    st.from_regex(r"[0-9]{0,18}", fullmatch=True),
)
def test_decimal_text_round_trip_equals_naive_reference(int_part: str, fraction: str) -> None:
    """Any plain positive decimal text keeps its value and its number of decimals."""
    text = f"{int_part}.{fraction}" if fraction else int_part
    value = Fraction(int(int_part + fraction), 10 ** len(fraction))
    if value == 0:
        with pytest.raises(InvalidTrade):
            build(price=text)
        return
    price = build(price=text).price
    assert Fraction(price) == value
    assert price.as_tuple().exponent == -len(fraction)
    assert format(price, "f") == text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exchange_time_us", MIN_TIME_US - 1),
        ("exchange_time_us", 0),
        ("exchange_time_us", -1),
        ("ingest_time_us", MIN_TIME_US - 1),
        ("ingest_time_us", 0),
    ],
)
def test_times_before_2009_are_rejected(field: str, value: int) -> None:
    """A trade (or its receipt) before 2009 is a clock error."""
    overrides = {field: value}
    if field == "ingest_time_us":
        overrides["exchange_time_us"] = MIN_TIME_US
    with pytest.raises(InvalidTrade, match="before 2009"):
        build(**overrides)


def test_first_instant_of_2009_is_accepted() -> None:
    """The 2009 bound is inclusive."""
    trade = build(exchange_time_us=MIN_TIME_US, ingest_time_us=MIN_TIME_US)
    assert format_time_us(trade.exchange_time_us) == "2009-01-01T00:00:00.000000Z"


def test_exchange_time_more_than_a_day_ahead_of_ingest_is_rejected() -> None:
    """Exchange clocks may run ahead by up to one day, not one microsecond more."""
    build(exchange_time_us=NOW_US + MAX_CLOCK_SKEW_US, ingest_time_us=NOW_US)
    with pytest.raises(InvalidTrade, match="more than a day ahead"):
        build(exchange_time_us=NOW_US + MAX_CLOCK_SKEW_US + 1, ingest_time_us=NOW_US)


def test_exchange_time_long_before_ingest_is_accepted() -> None:
    """Old trades (replays, backfills) are valid: only the future is bounded."""
    assert build(exchange_time_us=MIN_TIME_US, ingest_time_us=NOW_US).exchange_time_us == (
        MIN_TIME_US
    )


def test_times_beyond_year_9999_are_rejected() -> None:
    """Every accepted trade time can be formatted (stored) without error."""
    with pytest.raises(InvalidTrade):
        build(exchange_time_us=2**62, ingest_time_us=2**62)


@pytest.mark.parametrize(
    "exchange", ["", "Binance", "BINANCE", " binance", "simulated ", "bin-ance", "a" * 33]
)
def test_unknown_exchange_is_rejected(exchange: str) -> None:
    """Only lower-case venue names (a module name: a-z, 0-9, _) are accepted."""
    with pytest.raises(InvalidTrade, match="unknown exchange"):
        build(exchange=exchange)


@pytest.mark.parametrize("exchange", ["simulated", "binance", "coinbase", "kraken"])
def test_known_exchanges_are_accepted(exchange: str) -> None:
    """Every contract exchange name builds a trade."""
    assert build(exchange=exchange).exchange == exchange


@pytest.mark.parametrize(
    ("symbol", "reason"),
    [
        ("BTC-USD", "not normalized"),
        ("btcusdt", "not normalized"),
        ("BTC/USD", "not normalized"),
        (" BTCUSDT", "not normalized"),
        ("B", "invalid symbol"),
        ("", "invalid symbol"),
        ("BTC.USD", "invalid symbol"),
    ],
)
def test_non_normalized_or_invalid_symbol_is_rejected(symbol: str, reason: str) -> None:
    """Outside the adapters a trade carries the normalized symbol only."""
    with pytest.raises(InvalidTrade, match=reason):
        build(symbol=symbol)


def test_non_normalized_symbol_error_names_the_expected_spelling() -> None:
    """The reason says what the symbol should have been."""
    with pytest.raises(InvalidTrade, match="'BTCUSD'"):
        build(symbol="BTC-USD")


@pytest.mark.parametrize(
    "trade_id", ["", "x" * (MAX_TRADE_ID_LENGTH + 1), "12\n34", "\x00", "id\t1", "\u200b"]
)
def test_empty_oversize_or_unprintable_trade_id_is_rejected(trade_id: str) -> None:
    """trade_id is 1-64 printable characters."""
    with pytest.raises(InvalidTrade, match="trade_id"):
        build(trade_id=trade_id)


@pytest.mark.parametrize("trade_id", ["1", "x" * MAX_TRADE_ID_LENGTH, "a-b c:d", "ид-7"])
def test_printable_trade_ids_up_to_64_chars_are_accepted(trade_id: str) -> None:
    """Any printable text of 1-64 characters is a trade id, kept as is."""
    assert build(trade_id=trade_id).trade_id == trade_id


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        ("buy", Side.BUY),
        ("BUY", Side.BUY),
        ("Sell", Side.SELL),
        ("sell", Side.SELL),
        (Side.SELL, Side.SELL),
        (None, None),
    ],
)
def test_side_is_parsed_case_insensitively(side: Side | str | None, expected: Side | None) -> None:
    """Sides are 'buy'/'sell' in any case, a Side, or None (unknown)."""
    assert build(side=side).side is expected


@pytest.mark.parametrize("side", ["", "b", "long", "bid", " buy", "none"])
def test_unknown_side_is_rejected(side: str) -> None:
    """Anything but buy/sell is an error, not a silent None."""
    with pytest.raises(InvalidTrade, match="side"):
        build(side=side)


def test_invalid_trade_is_a_value_error() -> None:
    """Callers catching ValueError also catch InvalidTrade."""
    assert issubclass(InvalidTrade, ValueError)


@given(trades())
def test_a_valid_trade_rebuilds_to_itself(trade: Trade) -> None:
    """new_trade accepts every field of a valid trade back unchanged (validation is stable)."""
    rebuilt = new_trade(
        exchange=trade.exchange,
        symbol=trade.symbol,
        trade_id=trade.trade_id,
        price=str(trade.price),
        quantity=str(trade.quantity),
        side=trade.side,
        exchange_time_us=trade.exchange_time_us,
        ingest_time_us=trade.ingest_time_us,
    )
    assert rebuilt == trade
    assert rebuilt.price.as_tuple() == trade.price.as_tuple()


def test_format_time_us_is_iso_utc_with_microseconds() -> None:
    """Formatting gives ISO-8601 UTC, six fractional digits and a Z."""
    assert format_time_us(1_700_000_000_123_456) == "2023-11-14T22:13:20.123456Z"
    assert format_time_us(1_700_000_000_000_000) == "2023-11-14T22:13:20.000000Z"


@given(st.integers(0, LAST_FIXED_WIDTH_US))
def test_format_time_us_is_fixed_width_and_round_trips(time_us: int) -> None:
    """Every time 1970..9999 formats to 27 chars and parses back to the same microsecond."""
    text = format_time_us(time_us)
    assert len(text) == 27
    assert text.endswith("Z")
    assert datetime_to_time_us(datetime.fromisoformat(text)) == time_us
    assert datetime_to_time_us(time_us_to_datetime(time_us)) == time_us


@given(st.decimals(allow_nan=False, allow_infinity=False))
@example(Decimal("1E-8"))
@example(Decimal("1E+3"))
@example(Decimal("0.000001"))
@example(Decimal("0.0000001"))
def test_plain_decimal_text_is_format_f(value: Decimal) -> None:
    """The stored text of an amount is format(value, "f"): every digit, no exponent."""
    assert plain_decimal_text(value) == format(value, "f")


@given(st.integers(0, LAST_FIXED_WIDTH_US), st.lists(st.integers(-2_000_000, 2_000_000)))
def test_format_time_us_equals_strftime_of_the_datetime(time_us: int, offsets: list[int]) -> None:
    """The per-second cache gives, for times near each other too, what strftime gives."""
    for moment_us in [time_us, *(time_us + offset for offset in offsets)]:
        moment_us = min(max(moment_us, 0), LAST_FIXED_WIDTH_US)
        expected = time_us_to_datetime(moment_us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert format_time_us(moment_us) == expected


@given(st.integers(0, LAST_FIXED_WIDTH_US), st.integers(0, LAST_FIXED_WIDTH_US))
def test_format_time_us_text_order_is_time_order(a_us: int, b_us: int) -> None:
    """Comparing the texts compares the times (so SQLite can sort ISO text)."""
    assert (format_time_us(a_us) < format_time_us(b_us)) == (a_us < b_us)


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_datetime_to_time_us_equals_naive_reference(moment: datetime) -> None:
    """Microseconds since the epoch equal exact timedelta arithmetic, in any time zone."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert datetime_to_time_us(moment) == (moment - epoch) // timedelta(microseconds=1)


def test_time_us_to_datetime_is_aware_utc() -> None:
    """Datetimes produced from microseconds carry the UTC zone."""
    moment = time_us_to_datetime(NOW_US + 7)
    assert moment.tzinfo is UTC
    assert moment.microsecond == 7


def _outcome(build_trade: Any) -> Trade | str:
    try:
        result: Trade = build_trade()
    except InvalidTrade as exc:
        return f"InvalidTrade: {exc}"
    return result


_valid_fields = st.tuples(
    st.sampled_from(["binance", "kraken"]),
    st.sampled_from(["BTCUSDT", "ETHUSD"]),
    st.integers(1, 10**12).map(str),
    st.decimals(min_value=Decimal("0.00000001"), max_value=10**9, places=8).map(str),
    st.decimals(min_value=Decimal("0.00000001"), max_value=10**9, places=8).map(str),
    st.sampled_from([None, Side.BUY, Side.SELL]),
    st.integers(NOW_US - 10**9, NOW_US + 10**9),
    st.just(NOW_US),
)
_amount_junk = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=8).map(str),
    st.sampled_from(
        ["0", "-1", "NaN", "Infinity", "1e5", "1E-50", "1e+60", "abc", "", " 2.5 ", "1_000"]
    ),
    st.text(alphabet="0123456789.", min_size=30, max_size=45),
)
_junk = (
    st.sampled_from(["nyse", ""]),
    st.sampled_from(["btcusdt", "BTC-USD", "X", "ß"]),
    st.one_of(st.text(max_size=70), st.sampled_from(["", "a\n", "x" * 65])),
    _amount_junk,
    _amount_junk,
    st.none(),
    st.integers(MIN_TIME_US - 2, NOW_US + MAX_CLOCK_SKEW_US + 2),
    st.sampled_from([MIN_TIME_US - 1, MIN_TIME_US, 4_102_444_800_000_000, 4_102_444_800_000_001]),
)


@st.composite
def _trade_fields(draw: st.DrawFn) -> tuple[Any, ...]:
    """Valid fields, with up to two of them replaced by something probably invalid."""
    fields = list(draw(_valid_fields))
    for index in draw(st.lists(st.integers(0, 7), max_size=2)):
        fields[index] = draw(_junk[index])
    return tuple(fields)


@settings(max_examples=500)  # cheap, and each field's invalid values are rare in a draw
@given(_trade_fields())
@example(("binance", "BTCUSDT", "1", "1", "1E-50", None, NOW_US, NOW_US))
@example(("binance", "BTCUSDT", "1", "1E+50", "1", None, NOW_US, NOW_US))
def test_trade_from_text_agrees_with_new_trade(fields: tuple[Any, ...]) -> None:
    """The decoder's fast path gives new_trade's trade or new_trade's error, before and after
    the symbol is known."""
    from tickpipe.core.trade import trade_from_text

    names = ("exchange", "symbol", "trade_id", "price", "quantity", "side")
    names += ("exchange_time_us", "ingest_time_us")
    expected = _outcome(lambda: new_trade(**dict(zip(names, fields, strict=True))))
    assert _outcome(lambda: trade_from_text(*fields)) == expected
    with contextlib.suppress(InvalidTrade):  # a valid symbol becomes known: the fast path
        trade_from_text("binance", fields[1], "1", "1", "1", None, NOW_US, NOW_US)
    assert _outcome(lambda: trade_from_text(*fields)) == expected
