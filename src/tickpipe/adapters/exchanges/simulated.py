"""The simulated exchange: a seeded random walk per symbol, at a steady rate.

Same seed, same trades (symbols, prices, sizes, sides, ids relative to the first one); the
timestamps are the wall clock's. Prices and sizes are exact decimal strings quantized to
realistic tick sizes.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from tickpipe.core.symbols import normalize_symbol
from tickpipe.core.trade import Side, Trade

if TYPE_CHECKING:
    from tickpipe.adapters.exchanges.registry import SourceOptions

EXCHANGE = "simulated"
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT")
_KNOWN_PRICES = {"BTC": 65_000.0, "ETH": 3_400.0, "SOL": 150.0, "BNB": 580.0, "XRP": 0.55}
_VOLATILITY_PER_TRADE = 0.0002
_TICK_S = 0.01  # emission granularity: trades due are emitted in bursts at most this far apart
_BURST = 1_000  # trades emitted at most between two turns of the event loop


@dataclass(slots=True)
class _Walk:
    symbol: str
    price: float
    price_decimals: int
    next_trade_id: int = 1

    @property
    def price_format(self) -> str:
        return f".{self.price_decimals}f"


def _start_price(symbol: str) -> float:
    for base, price in _KNOWN_PRICES.items():
        if symbol.startswith(base):
            return price
    # Unknown symbols get a stable pseudo-random price between 1 and 1,000.
    return 1.0 + zlib.crc32(symbol.encode()) % 1_000


def _decimals_for(price: float) -> int:
    """Tick size: about six significant digits, at least two decimals."""
    return max(2, 6 - math.floor(math.log10(price)) - 1)


class SimulatedMarket:
    """A TradeSource. `rate_per_s` trades per second over all symbols together. Trade ids of
    every symbol count up from `first_trade_id`; the CLI starts them at the run's start time in
    microseconds, so ids stay unique (and increasing) across restarts on the same database."""

    def __init__(
        self,
        raw_symbols: Sequence[str],
        rate_per_s: float,
        seed: int | None = None,
        first_trade_id: int = 1,
    ) -> None:
        if not raw_symbols:
            raise ValueError("the simulated market needs at least one symbol")
        if rate_per_s <= 0:
            raise ValueError(f"rate must be positive, got {rate_per_s}")
        self.rate_per_s = rate_per_s
        self._random = random.Random(seed)
        self._walks = []
        for symbol in dict.fromkeys(normalize_symbol(raw) for raw in raw_symbols):
            price = _start_price(symbol)
            self._walks.append(_Walk(symbol, price, _decimals_for(price), first_trade_id))
        self._price_formats = [walk.price_format for walk in self._walks]

    def next_trade(self, now_us: int) -> Trade:
        """One trade of a random symbol: the walk moves, the taker side follows the move."""
        rnd = self._random
        index = rnd.randrange(len(self._walks))
        walk = self._walks[index]
        step = rnd.gauss(0.0, _VOLATILITY_PER_TRADE)
        price = walk.price = walk.price * math.exp(step)
        quantity = rnd.lognormvariate(-4.0, 1.2)
        trade_id = walk.next_trade_id
        walk.next_trade_id = trade_id + 1
        # Positional, formats prepared: at full speed this is a third of the ingestor's time.
        return Trade(
            EXCHANGE,
            walk.symbol,
            str(trade_id),
            Decimal(format(price, self._price_formats[index])),
            Decimal(format(quantity if quantity > 1e-8 else 1e-8, ".8f")),
            Side.BUY if step >= 0 else Side.SELL,
            now_us,
            now_us,
        )

    async def trades(self) -> AsyncIterator[Trade]:
        start_s = time.monotonic()
        emitted = 0
        next_us = 0  # times strictly increase, from burst to burst too
        while True:
            burst_s = time.monotonic()
            owed = int((burst_s - start_s) * self.rate_per_s) + 1 - emitted
            # At most a burst per turn of the event loop: a market running behind its rate
            # (a rate beyond what the machine makes) must not starve the loop's other tasks.
            due = min(owed, _BURST)
            now_us = max(time.time_ns() // 1000, next_us)
            for i in range(due):
                yield self.next_trade(now_us + i)  # distinct, increasing times within a burst
            if due > 0:
                emitted += due
                next_us = now_us + due
            if owed > _BURST:
                await asyncio.sleep(0)
                continue
            # The next burst one tick after this one (or at the next trade, if later): waking
            # for every trade at high rates costs more than making the trades.
            wake_s = max(start_s + emitted / self.rate_per_s, burst_s + _TICK_S)
            await asyncio.sleep(max(0.0, min(_TICK_S, wake_s - time.monotonic())))


def open_source(raw_symbols: Sequence[str], options: SourceOptions) -> SimulatedMarket:
    """The registry's entry (adapters/exchanges/registry.py): ids start at the run's start."""
    return SimulatedMarket(raw_symbols, options.sim_rate, options.sim_seed, options.run_start_us)
