"""Scenario 8: the exchange drops the stream twice during `tickpipe run` on Kafka, PostgreSQL and
Redis; after each reconnect the (fake) Binance server replays trades already sent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.exchanges.fake_exchange import FakeExchange, Session, run_in_thread
from faults.harness import memory_mb, metric, report, stored_rows, wait_for
from fixtures.procs import free_port, tickpipe_process

pytestmark = [pytest.mark.infra, pytest.mark.slow]

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
TRADES_PER_CONNECTION = 100
REPLAYED_PER_RECONNECT = 30
DROPS = 2


async def _stream_then_drop(session: Session) -> None:
    await session.send_trades(TRADES_PER_CONNECTION, interval_s=0.002)
    await session.drop()


async def _replay_stream_then_drop(session: Session) -> None:
    await session.replay(REPLAYED_PER_RECONNECT)
    await _stream_then_drop(session)


async def _replay_stream_then_hold(session: Session) -> None:
    await session.replay(REPLAYED_PER_RECONNECT)
    await session.send_trades(TRADES_PER_CONNECTION, interval_s=0.002)
    await session.hold()


@pytest.mark.timeout(90)
def test_exchange_drops_reconnect_and_store_no_duplicates(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """Each drop is followed by a reconnect; of the trades sent (replays included), every
    distinct one is stored exactly once, and none twice."""
    started_s = time.monotonic()
    channel, prefix = redis_names
    port = free_port()
    fake = FakeExchange(
        "binance",
        SYMBOLS,
        scripts=[_stream_then_drop, _replay_stream_then_drop, _replay_stream_then_hold],
    )
    expected_trades = TRADES_PER_CONNECTION * (DROPS + 1)
    with run_in_thread(fake):
        env = {
            "TICKPIPE_SOURCE": "binance",
            "TICKPIPE_SYMBOLS": ",".join(SYMBOLS),
            "TICKPIPE_EXCHANGE_URL": fake.url,
            "TICKPIPE_DATABASE_URL": empty_postgres_url,
            "TICKPIPE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TICKPIPE_KAFKA_TOPIC": kafka_topic,
            "TICKPIPE_KAFKA_GROUP": f"group-{kafka_topic}",
            "TICKPIPE_REDIS_URL": redis_url,
            "TICKPIPE_REDIS_CHANNEL": channel,
            "TICKPIPE_REDIS_PREFIX": prefix,
            "TICKPIPE_HTTP_PORT": str(port),
        }
        with tickpipe_process(["run"], env, tmp_path / "run.log") as run:
            wait_for(lambda: len(fake.history) >= expected_trades, 40, "the fake sent everything")
            wait_for(
                lambda: len(stored_rows(empty_postgres_url)) >= expected_trades,
                30,
                "everything stored",
            )
            time.sleep(1.0)  # a late duplicate would show up here
            reconnects = metric(port, "tickpipe_exchange_reconnects_total", exchange="binance")
            duplicates_dropped = metric(port, "tickpipe_duplicate_trades_dropped_total")
            peak_mb = memory_mb(run.process.pid)["VmHWM"]
            assert run.terminate() == 0, run.log()

    rows = stored_rows(empty_postgres_url)
    stored_keys = [(row["symbol"], row["trade_id"]) for row in rows]
    sent_keys = {(t.symbol, str(t.trade_id)) for t in fake.history}
    report(
        "exchange-drop",
        drops=DROPS,
        sent=expected_trades + DROPS * REPLAYED_PER_RECONNECT,
        distinct_sent=len(sent_keys),
        stored=len(rows),
        duplicates=len(stored_keys) - len(set(stored_keys)),
        missing=len(sent_keys - set(stored_keys)),
        connections=fake.connections,
        reconnects_counted=int(reconnects),
        duplicates_dropped_at_source=int(duplicates_dropped),
        run_vmhwm_mb=peak_mb,
        duration_s=time.monotonic() - started_s,
    )
    assert fake.connections == DROPS + 1
    assert len(stored_keys) == len(set(stored_keys)) == expected_trades
    assert set(stored_keys) == sent_keys
    assert duplicates_dropped >= DROPS * REPLAYED_PER_RECONNECT
