"""Properties of the three venue parsers: any decimal text survives exactly; no input whatsoever
makes `parse_frame` raise, and whatever it yields is a valid trade."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.exchanges.support import INGEST_TIME_US, recorded
from tickpipe.adapters.exchanges import binance, coinbase, kraken
from tickpipe.adapters.exchanges.frames import ParseResult

PARSERS: dict[str, Callable[[str | bytes, int], ParseResult]] = {
    "binance": binance.parse_frame,
    "coinbase": coinbase.parse_frame,
    "kraken": kraken.parse_frame,
}


@st.composite
def decimal_texts(draw: st.DrawFn) -> str:
    """Positive decimals written every way JSON allows: plain, trailing zeros, e/E exponents."""
    mantissa = draw(st.integers(1, 10**20))
    exponent = draw(st.integers(-25, 5))
    style = draw(st.sampled_from(["e", "E", "E+", "fixed", "fixed-zeros"]))
    if style == "e":
        return f"{mantissa}e{exponent}"
    if style.startswith("E"):
        sign = "+" if style == "E+" and exponent >= 0 else ""
        return f"{mantissa}E{sign}{exponent}"
    fixed = format(Decimal(mantissa).scaleb(exponent), "f")
    if style == "fixed-zeros":
        zeros = "0" * draw(st.integers(1, 4))
        fixed = f"{fixed}{zeros}" if "." in fixed else f"{fixed}.{zeros}"
    return fixed


def _frame(venue: str, price: str, quantity: str) -> str:
    if venue == "kraken":  # bare JSON numbers
        return (
            '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy",'
            f'"price":{price},"qty":{quantity},"ord_type":"market","trade_id":7,'
            '"timestamp":"2023-09-25T07:49:37.708706Z"}]}'
        )
    if venue == "coinbase":
        message = json.loads(recorded("coinbase_market_trades_update.json"))
        trade = message["events"][0]["trades"][0]
        trade["price"], trade["size"] = price, quantity
        return json.dumps(message)
    message = json.loads(recorded("binance_trade.json"))
    message["data"]["p"], message["data"]["q"] = price, quantity
    return json.dumps(message)


@pytest.mark.parametrize("venue", sorted(PARSERS))
@given(price=decimal_texts(), quantity=decimal_texts())
def test_any_decimal_text_survives_exactly(venue: str, price: str, quantity: str) -> None:
    """The stored Decimal is the received text's own value and exponent, never a float's."""
    (trade,) = PARSERS[venue](_frame(venue, price, quantity), INGEST_TIME_US).trades
    assert trade.price.as_tuple() == Decimal(price).as_tuple()
    assert trade.quantity.as_tuple() == Decimal(quantity).as_tuple()


def _assert_sane(result: ParseResult) -> None:
    assert isinstance(result, ParseResult)
    for trade in result.trades:
        assert trade.price.is_finite()
        assert trade.price > 0
        assert trade.quantity.is_finite()
        assert trade.quantity > 0
        assert trade.symbol.isalnum()
        assert trade.symbol.isupper()


@pytest.mark.parametrize("venue", sorted(PARSERS))
@given(frame=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(venue: str, frame: bytes) -> None:
    """Random bytes come back as a counted rejection (or a harmless event), never an exception."""
    _assert_sane(PARSERS[venue](frame, INGEST_TIME_US))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("venue", sorted(PARSERS))
@given(value=json_values)
def test_arbitrary_json_never_raises(venue: str, value: Any) -> None:
    """Well-formed JSON of any shape is parsed or rejected, never raised on."""
    _assert_sane(PARSERS[venue](json.dumps(value), INGEST_TIME_US))


# Field values that get past the first checks: plausible ones mixed with junk of every type.
field_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "BTC/USD",
            "BTC-USD",
            "BTCUSDT",
            "buy",
            "sell",
            "BUY",
            "SELL",
            "65000.10",
            "-1",
            "NaN",
            "1e999",
            "2023-09-25T07:49:37.708706Z",
            "2023-13-45T99:99:99Z",
            1_700_000_000_000,
            -5,
            True,
            7,
            10**400,
        ]
    ),
)
TRADE_KEYS = {
    "binance": ["e", "E", "s", "t", "p", "q", "T", "m", "M"],
    "coinbase": ["trade_id", "product_id", "price", "size", "side", "time"],
    "kraken": ["symbol", "side", "price", "qty", "ord_type", "trade_id", "timestamp"],
}


def _envelope(venue: str, items: list[dict[str, Any]]) -> Any:
    if venue == "binance":
        return {"stream": "btcusdt@trade", "data": items[0] if items else {}}
    if venue == "coinbase":
        return {"channel": "market_trades", "events": [{"type": "update", "trades": items}]}
    return {"channel": "trade", "type": "update", "data": items}


@pytest.mark.parametrize("venue", sorted(PARSERS))
@given(data=st.data())
def test_trade_shaped_garbage_never_raises(venue: str, data: st.DataObject) -> None:
    """Venue-shaped frames with any field values: valid trades out, the rest rejected."""
    items = data.draw(
        st.lists(
            st.dictionaries(st.sampled_from(TRADE_KEYS[venue]), field_values, max_size=9),
            max_size=3,
        )
    )
    if venue == "binance":
        for item in items:
            item["e"] = "trade"
    frame = json.dumps(_envelope(venue, items))
    _assert_sane(PARSERS[venue](frame, INGEST_TIME_US))
