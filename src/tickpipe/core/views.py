"""The contract's JSON views of a scored trade (plain dicts; encoding is the adapters' job).

Prices become JSON numbers here, the one place exact decimals turn into floats.
"""

from __future__ import annotations

from typing import Any

from tickpipe.core.candles import Candle
from tickpipe.core.scoring import ScoredTrade, SignalChange
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
        "signal": scored.signal,  # a StrEnum: the text itself, without the enum look-up
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


def candle_view(candle: Candle) -> View:
    """One OHLCV bar (GET /api/v1/candles); `time`/`timestamp` are the start of its interval."""
    return {
        "time": format_time_us(candle.bucket_start_us),
        "timestamp": candle.bucket_start_us // 1000,
        "open": float(candle.open),
        "high": float(candle.high),
        "low": float(candle.low),
        "close": float(candle.close),
        "volume": float(candle.volume),
        "quote_volume": float(candle.notional),
        "vwap": float(candle.vwap),
        "trade_count": candle.trade_count,
    }


def signal_change_view(change: SignalChange) -> View:
    """A BUY->SELL or SELL->BUY change (GET /api/v1/signals), at the trade that made it."""
    trade = change.scored.trade
    sma = change.scored.sma
    return {
        "time": format_time_us(trade.exchange_time_us),
        "timestamp": trade.exchange_time_us // 1000,
        "exchange": trade.exchange,
        "symbol": trade.symbol,
        "trade_id": trade.trade_id,
        "price": float(trade.price),
        "sma": None if sma is None else float(sma),
        "previous_signal": change.previous.value,
        "signal": change.scored.signal.value,
    }
