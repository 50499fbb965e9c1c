"""The workload: seeded simulated trades over 20 symbols, written to a topic by the real KafkaSink,
and the same trades as store records for the PostgreSQL ceilings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from tickpipe.adapters.bus.kafka import KafkaSink
from tickpipe.adapters.exchanges.simulated import SimulatedMarket
from tickpipe.adapters.store.postgres import copy_record
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


def trades(count: int, seed: int = SEED, *, start_us: int | None = None) -> Iterator[Trade]:
    """`count` trades of the seeded market, 1 us apart (distinct keys), ending about now."""
    market = SimulatedMarket(SYMBOLS, 1.0, seed)
    first_us = (time.time_ns() // 1000 - count) if start_us is None else start_us
    for i in range(count):
        yield market.next_trade(first_us + i)


def record_batches(count: int, batch_rows: int, seed: int) -> Iterator[list[tuple[Any, ...]]]:
    """Scored `trades` rows in batches of `batch_rows`."""
    scorer = Scorer(SMA_WINDOW)
    batch: list[tuple[Any, ...]] = []
    for trade in trades(count, seed):
        batch.append(copy_record(scorer.score(trade)))
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
