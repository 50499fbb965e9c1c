"""Shared helpers of the exchange-source tests: recorded frames, fast settings, metric deltas."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import REGISTRY

from tickpipe.adapters.exchanges.binance import binance_source
from tickpipe.adapters.exchanges.coinbase import coinbase_source
from tickpipe.adapters.exchanges.feed import ExchangeFeed, FeedSettings
from tickpipe.adapters.exchanges.kraken import kraken_source
from tickpipe.core.trade import Trade

FRAMES_DIR = Path(__file__).parent / "frames"
# A fixed receipt time after every recorded frame's trade time (2027-01-15).
INGEST_TIME_US = 1_800_000_000_000_000

SOURCES: dict[str, Callable[..., ExchangeFeed]] = {
    "binance": binance_source,
    "coinbase": coinbase_source,
    "kraken": kraken_source,
}
SYMBOLS: dict[str, tuple[str, ...]] = {
    "binance": ("BTCUSDT", "ETHUSDT"),
    "coinbase": ("BTC-USD", "ETH-USD"),
    "kraken": ("BTC/USD", "ETH/USD"),
}


def recorded(name: str) -> str:
    return (FRAMES_DIR / name).read_text().strip()


def fast_settings(**changes: object) -> FeedSettings:
    """Tiny backoffs and timeouts so that every reconnect scenario takes milliseconds."""
    values: dict[str, object] = {
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "open_timeout_s": 10.0,  # not under test here; a loaded machine took over 2 s once
        "close_timeout_s": 0.2,
        "log_interval_s": 0.0,
        "max_frame_bytes": 64 * 1024,
    }
    values.update(changes)
    return FeedSettings(**values)  # type: ignore[arg-type]


def source_for(
    venue: str,
    url: str,
    raw_symbols: Sequence[str] | None = None,
    idle_timeout_s: float = 5.0,
    **settings: object,
) -> ExchangeFeed:
    symbols = SYMBOLS[venue] if raw_symbols is None else raw_symbols
    return SOURCES[venue](symbols, url, idle_timeout_s, settings=fast_settings(**settings))


async def take(source: ExchangeFeed, count: int, timeout_s: float = 10.0) -> list[Trade]:
    """The first `count` trades of the source; closes it afterwards."""
    trades: list[Trade] = []
    async with asyncio.timeout(timeout_s):
        async with contextlib.aclosing(source.trades()) as stream:
            async for trade in stream:
                trades.append(trade)
                if len(trades) == count:
                    break
    return trades


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class MetricDelta:
    """Reads a counter before and after: `delta = MetricDelta(...); ...; delta()`."""

    def __init__(self, name: str, **labels: str) -> None:
        self.name = name
        self.labels = labels
        self.start = metric(name, **labels)

    def __call__(self) -> float:
        return metric(self.name, **self.labels) - self.start


def rejected(exchange: str, reason: str) -> MetricDelta:
    return MetricDelta("tickpipe_frames_rejected_total", exchange=exchange, reason=reason)
