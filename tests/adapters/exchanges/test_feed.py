"""The shared reconnect loop: backoff, rate-limited logging, error policy, parser bugs, cleanup."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.exchanges.fake_exchange import FakeExchange, Session, stream, trade_key
from adapters.exchanges.support import SYMBOLS, fast_settings, rejected, source_for, take
from fixtures.waiting import wait_until_async
from tickpipe.adapters.exchanges import coinbase, kraken
from tickpipe.adapters.exchanges.feed import (
    ExchangeFeed,
    RateLimitedLog,
    SubscriptionRejected,
)
from tickpipe.adapters.exchanges.frames import ParseResult
from tickpipe.backoff import backoff_delay_s


@given(attempt=st.integers(0, 10_000), initial=st.floats(0.001, 5), cap=st.floats(0.001, 60))
def test_backoff_is_jittered_below_a_capped_exponential(
    attempt: int, initial: float, cap: float
) -> None:
    """Full jitter: 0 <= delay <= min(cap, initial * 2**attempt), whatever the attempt."""
    delay = backoff_delay_s(attempt, initial, cap)
    assert 0.0 <= delay <= min(cap, initial * 2.0 ** min(attempt, 62))


def test_backoff_ceiling_doubles_until_the_cap() -> None:
    """The largest of many draws approaches 0.5, 1, 2, 4 ... and never exceeds 30 s."""
    import random

    rng = random.Random(7)
    ceilings = [max(backoff_delay_s(a, 0.5, 30.0, rng) for _ in range(2_000)) for a in range(9)]
    for attempt, ceiling in enumerate(ceilings):
        expected = min(30.0, 0.5 * 2**attempt)
        assert expected * 0.97 <= ceiling <= expected


def test_rate_limited_log_summarizes_instead_of_flooding(caplog: pytest.LogCaptureFixture) -> None:
    """One line at once, then at most one summary per interval with the counts by reason."""
    now = [0.0]
    logged = RateLimitedLog(logging.getLogger("test.ratelimit"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.ratelimit"):
        for n in range(1_000):
            now[0] = n * 0.001
            logged("frames dropped", "invalid_json" if n % 2 else "invalid_price", f"#{n}")
        now[0] = 10.5
        logged("frames dropped", "oversize", "last")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0] == "frames dropped (invalid_price: 1); latest: #0"
    assert lines[1] == (
        "frames dropped (invalid_json: 500, invalid_price: 499, oversize: 1); latest: last"
    )


def test_subscription_rejected_is_one_clear_line() -> None:
    """The CLI prints str(exc): exchange, symbols and the exchange's own reason."""
    exc = SubscriptionRejected("kraken", ["XBT/USD"], "Currency pair not supported XBT/USD")
    assert str(exc) == (
        "kraken rejected the subscription to XBT/USD: Currency pair not supported XBT/USD"
    )
    assert "\n" not in str(exc)


@pytest.mark.parametrize("url", ["http://example.com", "not a url", "ftp://x/y"])
def test_a_url_that_is_not_websocket_fails_at_construction(url: str) -> None:
    """A misconfigured TICKPIPE_EXCHANGE_URL is a ValueError at once, not a reconnect loop."""
    with pytest.raises(ValueError, match="invalid exchange URL"):
        kraken.kraken_source(["BTC/USD"], url, 30.0)


def test_no_symbols_fails_at_construction() -> None:
    """An empty symbol list is a configuration error."""
    with pytest.raises(ValueError, match="at least one symbol"):
        coinbase.coinbase_source([], None, 30.0)


async def test_a_parser_bug_drops_the_frame_and_the_stream_goes_on() -> None:
    """An exception escaping a parser is counted as parser_error; the connection lives on."""

    def fragile(frame: str | bytes, ingest_time_us: int) -> ParseResult:
        if "boom" in str(frame):
            raise ZeroDivisionError("bug")
        return kraken.parse_frame(frame, ingest_time_us)

    async def script(session: Session) -> None:
        await session.send_trades(1)
        await session.send_raw('{"boom": 1}')
        await session.send_trades(1)

    bugs = rejected("kraken", "parser_error")
    venue = dataclasses.replace(kraken.VENUE, parse_frame=fragile)
    async with FakeExchange("kraken", ("BTC/USD",), scripts=[script]) as fake:
        source = ExchangeFeed(venue, ["BTC/USD"], fake.url, fast_settings())
        trades = await take(source, 2)
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]
    assert bugs() == 1
    assert fake.connections == 1


async def test_an_error_after_a_healthy_start_reconnects_instead_of_failing() -> None:
    """An exchange error naming none of our symbols, once subscribed, is a reason to reconnect."""

    async def first(session: Session) -> None:
        await session.send_trades(1)
        await session.send_raw('{"type":"error","message":"internal hiccup"}')

    async with FakeExchange("coinbase", ("BTC-USD",), scripts=[first, stream(1)]) as fake:
        trades = await take(source_for("coinbase", fake.url, ("BTC-USD",)), 2)
    assert fake.connections == 2
    assert [trade_key(t) for t in trades] == [t.key() for t in fake.history]


@pytest.mark.parametrize("venue", ["coinbase", "kraken"])
async def test_an_error_before_any_ack_rejects_every_symbol_of_the_connection(venue: str) -> None:
    """An error in answer to the subscription that names no symbol still ends the source."""
    reply = {
        "coinbase": '{"type":"error","message":"Failed to subscribe"}',
        "kraken": '{"error":"Malformed request","method":"error","success":false}',
    }[venue]
    async with FakeExchange(venue, SYMBOLS[venue], subscribe_reply=reply) as fake:
        with pytest.raises(SubscriptionRejected) as caught:
            await take(source_for(venue, fake.url), 1, timeout_s=3)
    assert caught.value.raw_symbols == SYMBOLS[venue]
    assert fake.connections == 1


async def test_cancelling_the_consumer_closes_every_connection() -> None:
    """Cancelling the task that iterates `trades()` leaves no feed task and no open socket."""
    async with FakeExchange("kraken", ("BTC/USD",), scripts=[stream(1)]) as fake:
        source = source_for("kraken", fake.url, ("BTC/USD",))

        async def consume() -> None:
            async for _ in source.trades():
                pass

        consumer = asyncio.create_task(consume())
        await wait_until_async(lambda: fake.connections == 1, 5.0, "the feed connected")
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        feed_tasks = [t for t in asyncio.all_tasks() if "-feed-" in t.get_name()]
        assert feed_tasks == []
        server = fake._server
        assert server is not None
        await wait_until_async(lambda: not server.connections, 5.0, "the socket closed")
