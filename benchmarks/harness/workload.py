"""The workload: seeded simulated trades over 20 symbols, written to a topic by the real KafkaSink,
and the same trades as store records for the PostgreSQL ceilings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tickpipe.adapters.bus.kafka import KafkaSink
from tickpipe.adapters.exchanges.simulated import SimulatedMarket
from tickpipe.core.scoring import ScoredTrade, Scorer
from tickpipe.core.trade import Trade

SYMBOLS = [
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "BNBUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "DOGEUSDT",
    "AVAXUSDT",
    "DOTUSDT",
    "LINKUSDT",
    "TRXUSDT",
    "MATICUSDT",
    "LTCUSDT",
    "BCHUSDT",
    "ATOMUSDT",
    "UNIUSDT",
    "ETCUSDT",
    "XLMUSDT",
    "NEARUSDT",
    "APTUSDT",
]
SEED = 7
SMA_WINDOW = 20
STORE_COLUMNS = (
    "time",
    "exchange",
    "symbol",
    "trade_id",
    "price",
    "quantity",
    "side",
    "sma",
    "signal",
    "ingest_time",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def trades(count: int, seed: int = SEED, *, start_us: int | None = None) -> Iterator[Trade]:
    """`count` trades of the seeded market, 1 us apart (distinct keys), ending about now."""
    market = SimulatedMarket(SYMBOLS, 1.0, seed)
    first_us = (time.time_ns() // 1000 - count) if start_us is None else start_us
    for i in range(count):
        yield market.next_trade(first_us + i)


def store_row(scored: ScoredTrade) -> tuple[Any, ...]:
    """One `trades` row (STORE_COLUMNS), as the PostgreSQL store writes it."""
    trade = scored.trade
    return (
        _EPOCH + timedelta(microseconds=trade.exchange_time_us),
        trade.exchange,
        trade.symbol,
        trade.trade_id,
        trade.price,
        trade.quantity,
        None if trade.side is None else trade.side.value,
        None if scored.sma is None else float(scored.sma),
        scored.signal.value,
        _EPOCH + timedelta(microseconds=trade.ingest_time_us),
    )


def record_batches(count: int, batch_rows: int, seed: int) -> Iterator[list[tuple[Any, ...]]]:
    """Scored `trades` rows in batches of `batch_rows`."""
    scorer = Scorer(SMA_WINDOW)
    batch: list[tuple[Any, ...]] = []
    for trade in trades(count, seed):
        batch.append(store_row(scorer.score(trade)))
        if len(batch) == batch_rows:
            yield batch
            batch = []
    if batch:
        yield batch


def scored(count: int, seed: int = SEED) -> list[ScoredTrade]:
    scorer = Scorer(SMA_WINDOW)
    return [scorer.score(trade) for trade in trades(count, seed)]


async def _prefill(bootstrap: str, topic: str, count: int, seed: int) -> float:
    sink = KafkaSink(bootstrap, topic)
    started_s = time.perf_counter()
    try:
        for trade in trades(count, seed):
            await sink.send(trade)
        undelivered = await sink.flush(120.0)
    finally:
        await sink.close()
    if undelivered:
        raise RuntimeError(f"{undelivered} trades were not delivered to {topic}")
    return count / (time.perf_counter() - started_s)


def prefill(bootstrap: str, topic: str, count: int, seed: int = SEED) -> float:
    """Writes `count` trades to `topic` with the real KafkaSink; returns its trades/s."""
    return asyncio.run(_prefill(bootstrap, topic, count, seed))
