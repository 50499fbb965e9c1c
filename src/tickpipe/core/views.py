"""The contract's JSON views of a scored trade (plain dicts; encoding is the adapters' job).

Prices become JSON numbers here, the one place exact decimals turn into floats.
"""

from __future__ import annotations

from typing import Any

from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.trade import format_time_us

View = dict[str, Any]


def update_view(scored: ScoredTrade) -> View:
    """One processed trade as a WebSocket frame (WS /ws)."""
    trade = scored.trade
    return {
        "type": "trade",
        "exchange": trade.exchange,
        "symbol": trade.symbol,
        "trade_id": trade.trade_id,
        "price": float(trade.price),
        "quantity": float(trade.quantity),
        "sma": None if scored.sma is None else float(scored.sma),
        "signal": scored.signal.value,
        "timestamp": trade.exchange_time_us // 1000,
        "ingest_time_us": trade.ingest_time_us,
    }


def snapshot_view(scored: ScoredTrade, window: int) -> View:
    """The latest state of a stream (GET /api/v1/snapshot)."""
    trade = scored.trade
    return {
        "exchange": trade.exchange,
        "symbol": trade.symbol,
        "trade_id": trade.trade_id,
        "price": float(trade.price),
        "sma": None if scored.sma is None else float(scored.sma),
        "window": window,
        "signal": scored.signal.value,
        "timestamp": trade.exchange_time_us // 1000,
    }


def history_view(scored: ScoredTrade) -> View:
    """A stored trade (GET /api/v1/history)."""
    trade = scored.trade
    return {
        "time": format_time_us(trade.exchange_time_us),
        "timestamp": trade.exchange_time_us // 1000,
        "exchange": trade.exchange,
        "symbol": trade.symbol,
        "trade_id": trade.trade_id,
        "price": float(trade.price),
        "quantity": float(trade.quantity),
        "side": None if trade.side is None else trade.side.value,
        "sma": None if scored.sma is None else float(scored.sma),
        "signal": scored.signal.value,
    }
