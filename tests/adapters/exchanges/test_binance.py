"""Binance: the parser against recorded frames, connection planning, and Binance-only behaviour
(gaps counted, serverShutdown, rotation before the 24-hour cut-off)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from adapters.exchanges.fake_exchange import FakeExchange, Session, stream, trade_key
from adapters.exchanges.support import INGEST_TIME_US, MetricDelta, recorded, source_for, take
from tickpipe.adapters.exchanges import binance
from tickpipe.adapters.exchanges.feed import SubscriptionRejected
from tickpipe.adapters.exchanges.frames import EventKind, RejectReason
from tickpipe.core.trade import Side


def test_documented_trade_frame_parses_exactly() -> None:
    """The docs' example: buyer is maker -> taker sold; ms trade time -> us."""
    result = binance.parse_frame(recorded("binance_trade.json"), INGEST_TIME_US)
    (trade,) = result.trades
    assert (trade.exchange, trade.symbol, trade.trade_id) == ("binance", "BNBBTC", "12345")
    assert (str(trade.price), str(trade.quantity)) == ("0.001", "100")
    assert trade.side is Side.SELL
    assert trade.exchange_time_us == 1_672_515_782_136_000
    assert trade.ingest_time_us == INGEST_TIME_US
    assert (result.rejections, result.events) == ((), ())


def test_buyer_taker_is_a_buy_and_trailing_zeros_survive() -> None:
    """m=false -> taker bought; "65000.10000000" stays that exact decimal."""
    (trade,) = binance.parse_frame(
        recorded("binance_trade_buyer_taker.json"), INGEST_TIME_US
    ).trades
    assert trade.side is Side.BUY
    assert str(trade.price) == "65000.10000000"
    assert trade.price.as_tuple() == Decimal("65000.10000000").as_tuple()
    assert str(trade.quantity) == "0.00012000"
    assert trade.exchange_time_us == 1_700_000_000_120_000  # "T", not the event time "E"


def test_control_frames_become_events() -> None:
    """serverShutdown asks for a reconnect; a subscribe result acks; an error is an error."""
    shutdown = binance.parse_frame(recorded("binance_server_shutdown.json"), INGEST_TIME_US)
    assert [e.kind for e in shutdown.events] == [EventKind.SHUTDOWN]
    ack = binance.parse_frame(recorded("binance_subscribe_result.json"), INGEST_TIME_US)
    assert [e.kind for e in ack.events] == [EventKind.ACK]
    error = binance.parse_frame(recorded("binance_error.json"), INGEST_TIME_US)
    assert [e.kind for e in error.events] == [EventKind.ERROR]
    assert "Invalid request" in error.events[0].detail


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("m", 1), RejectReason.INVALID_SIDE),  # an int is not a boolean here
        (("t", True), RejectReason.INVALID_TRADE_ID),
        (("T", "1672515782136"), RejectReason.INVALID_TIME),
        (("T", 1_000), RejectReason.INVALID_TIME),  # 1970
        (("p", "0"), RejectReason.INVALID_PRICE),
        (("q", "1e-999999"), RejectReason.INVALID_QUANTITY),
        (("s", "BNB BTC"), RejectReason.INVALID_SYMBOL),
        (("e", "aggTrade"), RejectReason.UNEXPECTED_SHAPE),
    ],
)
def test_bad_fields_are_rejected_with_their_reason(change: tuple[str, object], reason: str) -> None:
    """Each bad field maps to one reason of the fixed vocabulary."""
    import json

    frame = json.loads(recorded("binance_trade.json"))
    key, value = change
    frame["data"][key] = value
    result = binance.parse_frame(json.dumps(frame), INGEST_TIME_US)
    assert result.trades == ()
    assert [r.reason for r in result.rejections] == [reason]


def test_streams_are_split_at_1024_per_connection() -> None:
    """2,500 symbols -> three combined-stream URLs of 1,024, 1,024 and 452 streams."""
    symbols = [f"S{n:04d}USDT" for n in range(2_500)]
    plans = binance.plan_connections(symbols, "wss://stream.binance.com:9443")
    assert [len(p.raw_symbols) for p in plans] == [1_024, 1_024, 452]
    assert [p.url.count("@trade") for p in plans] == [1_024, 1_024, 452]
    assert all(p.subscribe_messages == () for p in plans)  # nothing sent: no rate limit to hit
    assert plans[2].url.startswith("wss://stream.binance.com:9443/stream?streams=s2048usdt@trade/")


@pytest.mark.parametrize(
    "base",
    [
        "wss://stream.binance.com:9443",
        "wss://stream.binance.com:9443/",
        "wss://stream.binance.com:9443/ws",
        "wss://stream.binance.com:9443/stream",
    ],
)
def test_the_configured_url_is_a_base_and_the_path_is_ours(base: str) -> None:
    """Whatever path the base URL carries, the stream URL is <host>/stream?streams=..."""
    (plan,) = binance.plan_connections(["BTCUSDT", "ethusdt"], base)
    assert plan.url == "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"
    assert plan.symbols == {"BTCUSDT", "ETHUSDT"}


def test_default_endpoint_is_the_public_one() -> None:
    """url=None -> Binance's public endpoint."""
    source = binance.binance_source(["BTCUSDT"], None, 30.0)
    assert source.url == "wss://stream.binance.com:9443"
    assert source.connection_plans()[0].url.startswith("wss://stream.binance.com:9443/stream?")


def test_malformed_symbols_are_named_in_the_rejection() -> None:
    """Binance never reports unknown symbols, so a malformed one is refused here, by name."""
    with pytest.raises(SubscriptionRejected) as caught:
        binance.plan_connections(["BTCUSDT", "BTC/USDT", "ETH-USD"], "wss://x")
    assert caught.value.raw_symbols == ("BTC/USDT", "ETH-USD")


async def test_trades_missed_during_a_drop_are_counted_as_gaps() -> None:
    """Binance replays nothing: the ids skipped across a reconnect are counted per symbol."""

    async def first(session: Session) -> None:
        await session.send_trades(2)
        session.miss_trades(4)  # two per symbol happen while we are away
        await session.drop()

    gaps = {
        s: MetricDelta("tickpipe_trade_id_gaps_total", exchange="binance", symbol=s)
        for s in ("BTCUSDT", "ETHUSDT")
    }
    async with FakeExchange("binance", ("BTCUSDT", "ETHUSDT"), scripts=[first, stream(2)]) as fake:
        trades = await take(source_for("binance", fake.url), 4)
    sent = [t.key() for t in fake.history]
    assert [trade_key(t) for t in trades] == sent[:2] + sent[-2:]
    assert (gaps["BTCUSDT"](), gaps["ETHUSDT"]()) == (2, 2)


async def test_server_shutdown_event_reconnects_at_once() -> None:
    """serverShutdown -> a new connection without waiting for the old one to be cut."""

    async def first(session: Session) -> None:
        await session.send_trades(2)
        await session.server_shutdown()

    restarts = MetricDelta("tickpipe_exchange_reconnects_total", exchange="binance")
    async with FakeExchange("binance", ("BTCUSDT",), scripts=[first, stream(2)]) as fake:
        source = source_for("binance", fake.url, ("BTCUSDT",), backoff_initial_s=30.0)
        trades = await take(source, 4, timeout_s=3)  # a backoff of up to 30 s would time out
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
    assert restarts() == 2


async def test_connection_is_rotated_before_its_maximum_age() -> None:
    """A connection older than the maximum age is replaced at once (Binance: 23 h by default)."""
    assert binance.VENUE.max_connection_age_s == 23 * 3600

    async def slow(session: Session) -> None:
        await session.send_trades(3, interval_s=0.2)

    async with FakeExchange("binance", ("BTCUSDT",), scripts=[slow]) as fake:
        source = source_for(
            "binance", fake.url, ("BTCUSDT",), max_connection_age_s=0.3, backoff_initial_s=30.0
        )
        trades = await take(source, 3, timeout_s=5)
        await asyncio.sleep(0)
    assert fake.connections >= 2
    assert len({t.trade_id for t in trades}) == 3
