"""The JSON shapes of the HTTP API (contract), for OpenAPI and for encoding responses."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class Exchange(StrEnum):
    simulated = "simulated"
    binance = "binance"
    coinbase = "coinbase"
    kraken = "kraken"


class HistoryTrade(BaseModel):
    time: str
    timestamp: int
    exchange: str
    symbol: str
    trade_id: str
    price: float
    quantity: float
    side: str | None
    sma: float | None
    signal: str


class CandleBar(BaseModel):
    time: str
    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    vwap: float
    trade_count: int


class SignalChangeItem(BaseModel):
    time: str
    timestamp: int
    exchange: str
    symbol: str
    trade_id: str
    price: float
    sma: float | None
    previous_signal: str
    signal: str


class Snapshot(BaseModel):
    exchange: str
    symbol: str
    trade_id: str
    price: float
    sma: float | None
    window: int
    signal: str
    timestamp: int


class BtcSnapshot(BaseModel):
    symbol: str
    price: float
    sma_20: float | None
    recommendation: str


class ErrorBody(BaseModel):
    detail: Any
