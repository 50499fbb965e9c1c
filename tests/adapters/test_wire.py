"""The bus wire format: `tickpipe.v1.Trade` Protobuf encode/decode and its validation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.strategies import trades
from fixtures.trades import make_trade
from tickpipe.adapters.bus._generated import trade_pb2
from tickpipe.adapters.bus.wire import WireError, decode_trade, encode_trade, trade_encoder
from tickpipe.core.trade import Side, Trade


def message(**overrides: Any) -> bytes:
    """A serialized, well-formed tickpipe.v1.Trade with the given fields replaced."""
    fields: dict[str, Any] = {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "trade_id": "42",
        "price": "65000.10",
        "quantity": "0.00100000",
        "side": trade_pb2.SIDE_BUY,
        "exchange_time_us": 1_700_000_000_000_000,
        "ingest_time_us": 1_700_000_000_001_000,
    }
    fields.update(overrides)
    return trade_pb2.Trade(**fields).SerializeToString()


def decode_or_wire_error(value: bytes) -> Trade | WireError:
    """decode_trade's outcome; any exception other than WireError propagates (fails the test)."""
    try:
        return decode_trade(value)
    except WireError as exc:
        return exc


@given(trades())
def test_encode_decode_round_trip(trade: Trade) -> None:
    """Every valid trade decodes to itself, decimals with their exact digits and scale."""
    decoded = decode_trade(encode_trade(trade))
    assert decoded == trade
    assert decoded.price.as_tuple() == trade.price.as_tuple()
    assert decoded.quantity.as_tuple() == trade.quantity.as_tuple()


@given(st.lists(trades(), max_size=5))
def test_the_reusing_encoder_gives_encode_trade_bytes(batch: list[Trade]) -> None:
    """One encoder over many trades: each gives exactly encode_trade's bytes (no field left
    over from the trade before, sides and decimals included)."""
    encode = trade_encoder()
    for trade in [*batch, make_trade(1, side=None), *batch]:
        assert encode(trade) == encode_trade(trade)


def test_decimals_travel_as_exact_text() -> None:
    """Price and quantity are the decimal text on the wire ('65000.10'), never a float."""
    parsed = trade_pb2.Trade.FromString(encode_trade(make_trade(price="65000.10")))
    assert parsed.price == "65000.10"
    assert parsed.quantity == "0.00100000"


@pytest.mark.parametrize(
    ("side", "wire_side"),
    [(Side.BUY, trade_pb2.SIDE_BUY), (Side.SELL, trade_pb2.SIDE_SELL), (None, 0)],
)
def test_side_maps_to_the_wire_enum(side: Side | None, wire_side: int) -> None:
    """buy/sell/unknown map to SIDE_BUY/SIDE_SELL/SIDE_UNSPECIFIED and back."""
    encoded = encode_trade(make_trade(side=side))
    assert trade_pb2.Trade.FromString(encoded).side == wire_side
    assert decode_trade(encoded).side is side


def test_unknown_fields_are_ignored() -> None:
    """A newer producer's extra field (number 99) does not break decoding (forward compat)."""
    extra_field = bytes([0x98, 0x06, 0x01])  # field 99, varint, value 1
    assert decode_trade(message() + extra_field) == decode_trade(message())


@given(st.binary(max_size=200))
@example(b"")
@example(b"\xff\xff\xff\xff")
@example(b"\x0a\x02\xff\xfe")  # field 1 (string) with invalid UTF-8
@example(b"\x0a\x10abc")  # field 1 length 16, truncated
@example(b"\x38" + b"\xff" * 11)  # varint longer than 10 bytes
@example(b"\x0b")  # deprecated start-group wire type
def test_garbage_bytes_raise_only_wire_error(value: bytes) -> None:
    """Arbitrary bytes either decode to a valid trade or raise WireError, never anything else."""
    outcome = decode_or_wire_error(value)
    if isinstance(outcome, WireError):
        assert str(outcome)
        assert "\n" not in str(outcome)


@given(trades(), st.data())
def test_corrupted_or_truncated_messages_raise_only_wire_error(trade: Trade, data: Any) -> None:
    """A flipped byte or a cut in a valid message gives WireError or a valid trade, nothing else."""
    encoded = bytearray(encode_trade(trade))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] ^= data.draw(st.integers(1, 255))
    decode_or_wire_error(bytes(encoded))
    decode_or_wire_error(bytes(encode_trade(trade))[:position])


@pytest.mark.parametrize(
    "value",
    [b"\xff\xff\xff\xff", b"\x0a\x02\xff\xfe", b"\x0a\x10abc"],
)
def test_undecodable_bytes_say_not_a_trade(value: bytes) -> None:
    """Bytes that are not Protobuf give the reason 'not a tickpipe.v1.Trade'."""
    with pytest.raises(WireError, match=r"^not a tickpipe\.v1\.Trade"):
        decode_trade(value)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"price": "-1"}, "price"),
        ({"price": "0"}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": "abc"}, "price"),
        ({"price": ""}, "price"),
        ({"quantity": "-0.5"}, "quantity"),
        ({"quantity": "Infinity"}, "quantity"),
        ({"symbol": "BTC-USD"}, "symbol"),
        ({"symbol": "btcusdt"}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"exchange": "FTX"}, "exchange"),  # any lower-case venue name is valid
        ({"exchange": ""}, "exchange"),
        ({"trade_id": ""}, "trade_id"),
        ({"trade_id": "x" * 65}, "trade_id"),
        ({"side": 7}, "side"),
        ({"side": -1}, "side"),
        ({"exchange_time_us": 0}, "exchange time"),
        ({"ingest_time_us": 0}, "ingest time"),
        ({"exchange_time_us": 0, "ingest_time_us": 0}, "time"),
        ({"exchange_time_us": -1}, "exchange time"),
        ({"exchange_time_us": 1_700_000_000_000_000 + 2 * 86_400_000_000}, "a day ahead"),
    ],
)
def test_well_formed_message_with_invalid_values_raises_a_readable_wire_error(
    overrides: dict[str, Any], reason: str
) -> None:
    """Valid Protobuf with invalid values is a WireError; its one-line reason names the field."""
    with pytest.raises(WireError, match=r"^invalid trade: ") as caught:
        decode_trade(message(**overrides))
    text = str(caught.value)
    assert reason in text
    assert "\n" not in text
    assert len(text) < 300


def test_empty_message_is_an_invalid_trade() -> None:
    """Zero bytes parse as an all-default message, which fails validation (unknown exchange)."""
    with pytest.raises(WireError, match="unknown exchange"):
        decode_trade(b"")


def test_wire_error_is_a_value_error() -> None:
    """Callers catching ValueError also catch WireError."""
    assert issubclass(WireError, ValueError)
