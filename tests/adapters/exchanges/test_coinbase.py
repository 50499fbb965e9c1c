"""Coinbase Advanced Trade: the parser against recorded frames, the subscription, and the
snapshot that fills a gap left by a reconnect."""

from __future__ import annotations

import json

import pytest

from adapters.exchanges.fake_exchange import FakeExchange, Session, stream, trade_key
from adapters.exchanges.support import INGEST_TIME_US, recorded, source_for, take
from tickpipe.adapters.exchanges import coinbase
from tickpipe.adapters.exchanges.feed import SubscriptionRejected
from tickpipe.adapters.exchanges.frames import EventKind, RejectReason
from tickpipe.core.trade import Side


def test_documented_snapshot_parses_exactly_and_oldest_first() -> None:
    """Both trades of the example snapshot, oldest first, taker sides as sent."""
    result = coinbase.parse_frame(recorded("coinbase_market_trades_snapshot.json"), INGEST_TIME_US)
    assert [(t.trade_id, str(t.price), str(t.quantity), t.side) for t in result.trades] == [
        ("000000000", "1260.01", "0.3", Side.BUY),
        ("000000001", "1260.02", "0.1", Side.SELL),
    ]
    assert {t.symbol for t in result.trades} == {"ETHUSD"}
    assert result.trades[0].exchange_time_us == 1_565_815_347_265_000
    assert result.rejections == ()


def test_nanosecond_times_are_cut_to_microseconds() -> None:
    """`...00.123456789Z` -> .123456 s; "0.00250000" keeps its zeros."""
    (trade,) = coinbase.parse_frame(
        recorded("coinbase_market_trades_update.json"), INGEST_TIME_US
    ).trades
    assert trade.exchange_time_us % 1_000_000 == 123_456
    assert (trade.symbol, trade.trade_id, str(trade.price), str(trade.quantity)) == (
        "BTCUSD",
        "555000111",
        "43215.10",
        "0.00250000",
    )


def test_control_frames_become_events() -> None:
    """Heartbeats keep the connection alive, subscriptions ack, errors name the product."""
    kinds = {
        name: [e.kind for e in coinbase.parse_frame(recorded(name), INGEST_TIME_US).events]
        for name in ("coinbase_heartbeats.json", "coinbase_subscriptions.json")
    }
    assert kinds == {
        "coinbase_heartbeats.json": [EventKind.HEARTBEAT],
        "coinbase_subscriptions.json": [EventKind.ACK],
    }
    (error,) = coinbase.parse_frame(recorded("coinbase_error.json"), INGEST_TIME_US).events
    assert error.kind is EventKind.ERROR
    assert "FOO-BAR is not a valid product" in error.detail


def test_one_bad_trade_costs_only_itself() -> None:
    """A batch with a NaN price yields its other trades and one counted rejection."""
    frame = json.loads(recorded("coinbase_market_trades_snapshot.json"))
    frame["events"][0]["trades"][0]["price"] = "NaN"
    result = coinbase.parse_frame(json.dumps(frame), INGEST_TIME_US)
    assert [t.trade_id for t in result.trades] == ["000000000"]
    assert [r.reason for r in result.rejections] == [RejectReason.INVALID_PRICE]


def test_subscribes_to_market_trades_and_heartbeats_one_message_each() -> None:
    """Coinbase wants one subscribe message per channel; product ids go upper case."""
    messages = [json.loads(m) for m in coinbase.subscribe_messages(["BTC-USD", "eth-usd"])]
    assert messages == [
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "market_trades"},
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "heartbeats"},
    ]


def test_usdc_products_accept_their_usd_twin() -> None:
    """Coinbase streams a -USDC book as -USD, so those trades are not 'unknown symbols'."""
    assert coinbase.accepted_symbols(["BTC-USDC"]) == {"BTCUSDC", "BTCUSD"}


def test_default_endpoint_is_the_public_one() -> None:
    """url=None -> the Advanced Trade market-data endpoint."""
    assert coinbase.coinbase_source(["BTC-USD"], None, 30.0).url == coinbase.DEFAULT_URL
    assert coinbase.DEFAULT_URL == "wss://advanced-trade-ws.coinbase.com"


def test_malformed_product_ids_are_named() -> None:
    """BTCUSD is not a product id; the rejection says which one."""
    with pytest.raises(SubscriptionRejected, match="BTCUSD"):
        coinbase.plan_connections(["BTC-USD", "BTCUSD"], "wss://x")


async def test_snapshot_after_a_reconnect_fills_the_gap_without_duplicates() -> None:
    """Trades missed while away come back in the next snapshot; those already seen don't."""

    async def first(session: Session) -> None:
        await session.send_trades(2)
        session.miss_trades(2)
        await session.drop()

    async with FakeExchange("coinbase", ("BTC-USD",), scripts=[first, stream(2)]) as fake:
        trades = await take(source_for("coinbase", fake.url, ("BTC-USD",)), 6)
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
