"""The exchange-source suite, run against each venue's fake exchange: what comes out is exactly
what the exchange sent, through drops, replays, garbage and silence."""

from __future__ import annotations

import asyncio

import pytest

from adapters.exchanges.fake_exchange import FakeExchange, Session, run_in_thread, stream, trade_key
from adapters.exchanges.support import (
    SYMBOLS,
    MetricDelta,
    rejected,
    source_for,
    take,
)
from fixtures.waiting import wait_until_async
from tickpipe.adapters.exchanges.feed import SubscriptionRejected

VENUES = ["binance", "coinbase", "kraken"]
PRICE_FIELD = {"binance": "p", "coinbase": "price", "kraken": "price"}
QUANTITY_FIELD = {"binance": "q", "coinbase": "size", "kraken": "qty"}
SYMBOL_FIELD = {"binance": "s", "coinbase": "product_id", "kraken": "symbol"}
SIDE_FIELD = {"binance": "m", "coinbase": "side", "kraken": "side"}
UNKNOWN = {"binance": "DOGEUSDT", "coinbase": "DOGE-USD", "kraken": "DOGE/USD"}


def _number(venue: str, text: str) -> str:
    """A value as the venue writes numbers: JSON strings, except Kraken's bare numbers."""
    return text if venue == "kraken" else f'"{text}"'


def reconnects(venue: str) -> MetricDelta:
    return MetricDelta("tickpipe_exchange_reconnects_total", exchange=venue)


@pytest.mark.parametrize("venue", VENUES)
async def test_normal_stream_yields_exactly_the_trades_sent(venue: str) -> None:
    """Every trade arrives once, in order, with exact decimals, taker side and exchange time."""
    async with FakeExchange(venue, SYMBOLS[venue], scripts=[stream(8)]) as fake:
        trades = await take(source_for(venue, fake.url), 8)
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
    assert all(t.exchange == venue for t in trades)


@pytest.mark.parametrize("venue", VENUES)
async def test_dropped_connection_resubscribes_and_drops_replayed_trades(venue: str) -> None:
    """After a cut, the source reconnects and resubscribes; replayed trades are not re-emitted."""

    async def first(session: Session) -> None:
        await session.send_trades(4)
        await session.drop()

    async def second(session: Session) -> None:
        await session.replay(3)
        await session.send_trades(4)

    duplicates = MetricDelta("tickpipe_duplicate_trades_dropped_total", exchange=venue)
    restarts = reconnects(venue)
    async with FakeExchange(venue, SYMBOLS[venue], scripts=[first, second]) as fake:
        trades = await take(source_for(venue, fake.url), 8)
        await asyncio.sleep(0.05)  # any stray duplicate would show up here
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
    assert fake.subscriptions == [SYMBOLS[venue]] * 2
    assert duplicates() >= 3
    assert restarts() == 2


@pytest.mark.parametrize("venue", VENUES)
async def test_garbage_is_dropped_and_counted_and_the_stream_goes_on(venue: str) -> None:
    """Invalid JSON, wrong shapes, bad numbers, sides and missing fields cost only themselves."""
    price, quantity = PRICE_FIELD[venue], QUANTITY_FIELD[venue]

    async def script(session: Session) -> None:
        await session.send_trades(1)
        await session.send_raw("{not json")
        await session.send_raw(b"\xff\xfe\x00garbage")
        await session.send_raw("[1, 2, 3]")
        await session.send_raw('{"unexpected": "object"}')
        await session.send_bad_trade(**{price: _number(venue, "NaN")})
        await session.send_bad_trade(**{price: _number(venue, "-1.5")})
        await session.send_bad_trade(**{price: _number(venue, "Infinity")})
        await session.send_bad_trade(**{price: '"abc"'})
        await session.send_bad_trade(**{quantity: _number(venue, "0")})
        await session.send_bad_trade(**{SIDE_FIELD[venue]: '"sideways"'})
        await session.send_bad_trade(**{SYMBOL_FIELD[venue]: None})
        await session.send_trades(1)

    counts = {
        reason: rejected(venue, reason)
        for reason in (
            "invalid_json",
            "unexpected_shape",
            "missing_field",
            "invalid_price",
            "invalid_quantity",
            "invalid_side",
        )
    }
    async with FakeExchange(venue, SYMBOLS[venue], scripts=[script]) as fake:
        trades = await take(source_for(venue, fake.url), 2)
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
    found = {reason: delta() for reason, delta in counts.items()}
    assert found["invalid_json"] == 2
    assert found["invalid_price"] == 4
    assert found["invalid_quantity"] == 1
    assert found["invalid_side"] == 1
    assert found["missing_field"] >= 1
    assert found["unexpected_shape"] + found["missing_field"] >= 3  # the two odd shapes


@pytest.mark.parametrize("venue", VENUES)
async def test_oversize_frame_is_counted_and_the_stream_resumes(venue: str) -> None:
    """A frame over the size limit costs one reconnect, never the source."""

    async def first(session: Session) -> None:
        await session.send_trades(1)
        await session.send_raw('{"padding":"' + "x" * 100_000 + '"}')
        await session.send_trades(1)  # lost with the connection the oversize frame killed

    oversize = rejected(venue, "oversize")
    async with FakeExchange(venue, SYMBOLS[venue], scripts=[first, stream(2)]) as fake:
        trades = await take(source_for(venue, fake.url, max_frame_bytes=16_384), 3)
    assert oversize() == 1
    assert trades[0].trade_id == str(fake.history[0].trade_id)
    assert {trade_key(t) for t in trades} <= {t.key() for t in fake.history}


@pytest.mark.parametrize("venue", VENUES)
async def test_silent_connection_is_replaced_after_the_idle_timeout(venue: str) -> None:
    """No data and no heartbeat (Binance: no pong) for the idle timeout -> a new connection."""

    async def silent(session: Session) -> None:
        await session.send_trades(2)
        # Binance's only sign of life is the pong; the others send application heartbeats.
        await session.go_silent(answer_pings=venue != "binance")

    restarts = reconnects(venue)
    async with FakeExchange(venue, SYMBOLS[venue], scripts=[silent, stream(2)]) as fake:
        loop = asyncio.get_running_loop()
        started = loop.time()
        trades = await take(source_for(venue, fake.url, idle_timeout_s=0.6), 4)
        elapsed = loop.time() - started
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
    assert restarts() == 2
    assert 0.3 < elapsed < 5


@pytest.mark.parametrize("venue", ["coinbase", "kraken"])
async def test_exchange_rejecting_a_symbol_ends_the_source_naming_it(venue: str) -> None:
    """An unknown symbol ends the source promptly with SubscriptionRejected, no reconnect loop."""
    raw_symbols = (*SYMBOLS[venue], UNKNOWN[venue])
    async with FakeExchange(
        venue, raw_symbols, unknown_symbols=frozenset({UNKNOWN[venue]})
    ) as fake:
        with pytest.raises(SubscriptionRejected) as caught:
            await take(source_for(venue, fake.url, raw_symbols), 1, timeout_s=3)
    assert caught.value.raw_symbols == (UNKNOWN[venue],)
    assert UNKNOWN[venue] in str(caught.value)
    assert fake.connections == 1


@pytest.mark.parametrize("venue", VENUES)
async def test_symbol_the_venue_cannot_spell_is_rejected_before_connecting(venue: str) -> None:
    """A symbol in another venue's notation fails at once with a message naming it."""
    wrong = {"binance": "BTC-USD", "coinbase": "BTC/USD", "kraken": "BTCUSD"}[venue]
    source = source_for(venue, "ws://127.0.0.1:9", (wrong,))
    with pytest.raises(SubscriptionRejected, match=wrong):
        await take(source, 1, timeout_s=1)


@pytest.mark.parametrize("venue", VENUES)
async def test_unreachable_exchange_is_retried_with_backoff(venue: str) -> None:
    """Connection refused is not fatal: the source keeps trying until the exchange is back."""
    restarts = reconnects(venue)
    fake = FakeExchange(venue, SYMBOLS[venue], scripts=[stream(1)])
    url = await fake.start()
    await fake.stop()  # the port is now closed

    async def bring_back() -> None:
        await wait_until_async(lambda: restarts() >= 3, 10.0, "three refused attempts")
        await fake.start(int(url.rsplit(":", 1)[1]))

    revival = asyncio.create_task(bring_back())
    try:
        trades = await take(source_for(venue, url), 1)
    finally:
        await revival
        await fake.stop()
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
    assert restarts() >= 3


@pytest.mark.parametrize("venue", VENUES)
async def test_trade_for_a_symbol_not_subscribed_is_dropped(venue: str) -> None:
    """A trade of a symbol we did not ask for is counted as unknown_symbol, not emitted."""
    raw_symbols = SYMBOLS[venue][:1]
    other = SYMBOLS[venue][1]

    async def script(session: Session) -> None:
        trade = session.fake.new_trade(other, record=False)
        await session.send_raw(session.fake.trade_frame([trade], 1))
        await session.send_trades(1)

    unknown = rejected(venue, "unknown_symbol")
    fake_symbols = (*raw_symbols, other)
    async with FakeExchange(venue, fake_symbols, scripts=[script]) as fake:
        trades = await take(source_for(venue, fake.url, raw_symbols), 1)
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
    assert unknown() == 1


async def test_fake_exchange_also_serves_from_its_own_thread() -> None:
    """The helper the end-to-end tests use: the fake in a thread, the source in this loop."""
    with run_in_thread(FakeExchange("kraken", SYMBOLS["kraken"], scripts=[stream(3)])) as fake:
        trades = await take(source_for("kraken", fake.url), 3)
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
