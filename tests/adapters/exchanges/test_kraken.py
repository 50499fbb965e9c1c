"""Kraken v2: JSON-number prices parsed exactly, the explicit snapshot flag, acks and errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from adapters.exchanges.fake_exchange import FakeExchange, Session, stream, trade_key
from adapters.exchanges.support import INGEST_TIME_US, recorded, source_for, take
from tickpipe.adapters.exchanges import kraken
from tickpipe.adapters.exchanges.frames import EventKind, RejectReason
from tickpipe.core.trade import Side


def test_documented_update_parses_numbers_exactly() -> None:
    """0.5117 and 40.0 and 1e-8 arrive as JSON numbers and stay exactly those decimals."""
    result = kraken.parse_frame(recorded("kraken_trade_update.json"), INGEST_TIME_US)
    first, second = result.trades
    assert (first.symbol, first.trade_id, first.side) == ("MATICUSD", "4665906", Side.SELL)
    assert (str(first.price), str(first.quantity)) == ("0.5117", "40.0")
    assert second.side is Side.BUY
    assert second.quantity.as_tuple() == Decimal("1e-8").as_tuple()
    assert first.exchange_time_us == 1_695_628_177_708_706


def test_snapshot_is_emitted_in_trade_id_order() -> None:
    """65000.10 keeps its trailing zero; the snapshot comes out oldest id first."""
    result = kraken.parse_frame(recorded("kraken_trade_snapshot.json"), INGEST_TIME_US)
    assert [(t.trade_id, str(t.price), str(t.quantity)) for t in result.trades] == [
        ("71002", "65000.0", "1E-8"),
        ("71003", "65000.10", "0.1"),
    ]


def test_acks_heartbeats_status_and_errors_become_events() -> None:
    """One event per control frame; an error names the refused symbol."""

    def kinds(name: str) -> list[EventKind]:
        return [e.kind for e in kraken.parse_frame(recorded(name), INGEST_TIME_US).events]

    assert kinds("kraken_subscribe_ack.json") == [EventKind.ACK]
    assert kinds("kraken_heartbeat.json") == [EventKind.HEARTBEAT]
    assert kinds("kraken_status.json") == [EventKind.INFO]
    (error,) = kraken.parse_frame(recorded("kraken_subscribe_error.json"), INGEST_TIME_US).events
    assert error.kind is EventKind.ERROR
    assert error.raw_symbols == ("XBT/USD",)
    assert "Currency pair not supported" in error.detail


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("price", "NaN"), RejectReason.INVALID_PRICE),
        (("price", "-Infinity"), RejectReason.INVALID_PRICE),
        (("price", "-0.5"), RejectReason.INVALID_PRICE),
        (("qty", "0"), RejectReason.INVALID_QUANTITY),
        (("qty", "true"), RejectReason.INVALID_QUANTITY),
        (("trade_id", '"4665906"'), RejectReason.INVALID_TRADE_ID),
        (("side", '"BUY!"'), RejectReason.INVALID_SIDE),
        (("timestamp", '"yesterday"'), RejectReason.INVALID_TIME),
        (("timestamp", '"2023-02-30T00:00:00Z"'), RejectReason.INVALID_TIME),
    ],
)
def test_bad_fields_are_rejected_with_their_reason(change: tuple[str, str], reason: str) -> None:
    """Each bad field (raw JSON text) maps to one reason; the good trade beside it survives."""
    key, raw_value = change
    frame = recorded("kraken_trade_update.json")
    original = {
        "price": "0.5117",
        "qty": "40.0",
        "trade_id": "4665906",
        "side": '"sell"',
        "timestamp": '"2023-09-25T07:49:37.708706Z"',
    }[key]
    bad = frame.replace(f'"{key}":{original}', f'"{key}":{raw_value}', 1)
    assert bad != frame
    result = kraken.parse_frame(bad, INGEST_TIME_US)
    assert [t.trade_id for t in result.trades] == ["4665907"]
    assert [r.reason for r in result.rejections] == [reason]


def test_subscription_sets_the_snapshot_flag_explicitly() -> None:
    """The docs disagree on the default, so the message always says snapshot: true."""
    (message,) = kraken.subscribe_messages(["BTC/USD", "eth/usd"])
    assert json.loads(message) == {
        "method": "subscribe",
        "params": {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"], "snapshot": True},
        "req_id": 1,
    }


def test_default_endpoint_is_the_public_v2_one() -> None:
    """url=None -> wss://ws.kraken.com/v2."""
    assert kraken.kraken_source(["BTC/USD"], None, 30.0).url == "wss://ws.kraken.com/v2"


async def test_snapshot_after_a_reconnect_fills_the_gap_without_duplicates() -> None:
    """The replayed last-50 snapshot drops what we had and delivers what we missed."""

    async def first(session: Session) -> None:
        await session.send_trades(3)
        session.miss_trades(3)
        await session.drop()

    symbols = ("BTC/USD", "ETH/USD")
    async with FakeExchange("kraken", symbols, scripts=[first, stream(2)]) as fake:
        trades = await take(source_for("kraken", fake.url, symbols), 8)
    by_symbol = sorted(trade_key(t) for t in trades)
    assert by_symbol == sorted(t.key() for t in fake.history)
    for symbol in ("BTCUSD", "ETHUSD"):  # per symbol, ids strictly increase
        ids = [int(t.trade_id) for t in trades if t.symbol == symbol]
        assert ids == sorted(set(ids))
