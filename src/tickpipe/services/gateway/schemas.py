"""The JSON shapes of the HTTP API and of the WebSocket frame (contract), for the documents
(`/openapi.json`, `/schemas/ws-frame.json`). Handlers still encode plain dicts with orjson: the
test suite checks real answers and frames against these shapes, instead of pydantic per answer.
Every model forbids unknown fields, so a field added to a view but not here fails those tests."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tickpipe.core.signal import Signal
from tickpipe.core.trade import Side

# Path parameter: what `normalize_symbol` turns into 2-32 letters/digits ('/' cannot travel in
# a path segment). Enforced by FastAPI before the handler, so document and check are one.
SYMBOL_PATTERN = r"^[-_]*(?:[A-Za-z0-9][-_]*){2,32}$"
SYMBOL_MAX_LENGTH = 40
NORMALIZED_SYMBOL = r"^[A-Z0-9]{2,32}$"
CURSOR_PATTERN = r"^[0-9]{1,19}_[0-9]{1,19}$"
EPOCH_MS_PATTERN = r"^[0-9]{1,13}$"
TIME_MAX_LENGTH = 40


def time_parameter_schema(examples: list[str]) -> dict[str, Any]:
    """A time query parameter: RFC 3339 date-time, date (UTC midnight) or epoch milliseconds."""
    return {
        "anyOf": [
            {"type": "string", "format": "date-time", "maxLength": TIME_MAX_LENGTH},
            {"type": "string", "format": "date"},
            {"type": "string", "pattern": EPOCH_MS_PATTERN},
        ],
        "examples": examples,
    }


class Exchange(StrEnum):
    simulated = "simulated"
    binance = "binance"
    coinbase = "coinbase"
    kraken = "kraken"


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


Symbol = Annotated[str, Field(pattern=NORMALIZED_SYMBOL, description="Normalized symbol")]
IsoTime = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, description="ISO-8601 UTC, with `Z`")
]
EpochMs = Annotated[int, Field(ge=0, description="Exchange trade time, epoch milliseconds")]
Sma = Annotated[
    float | None, Field(description="Mean price of the last `window` trades; null until then")
]


class HistoryTrade(Shape):
    time: IsoTime
    timestamp: EpochMs
    exchange: Exchange
    symbol: Symbol
    trade_id: str
    price: float
    quantity: float
    side: Side | None = Field(description="The taker's side; null when the venue does not say")
    sma: Sma
    signal: Signal


class CandleBar(Shape):
    time: IsoTime
    timestamp: EpochMs
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    vwap: float
    trade_count: Annotated[int, Field(ge=1)]


class SignalChangeItem(Shape):
    time: IsoTime
    timestamp: EpochMs
    exchange: Exchange
    symbol: Symbol
    trade_id: str
    price: float
    sma: Sma
    previous_signal: Literal[Signal.BUY, Signal.SELL]
    signal: Literal[Signal.BUY, Signal.SELL]


class Snapshot(Shape):
    exchange: Exchange
    symbol: Symbol
    trade_id: str
    price: float
    sma: Sma
    window: Annotated[int, Field(ge=1, description="Trades in the SMA (TICKPIPE_SMA_WINDOW)")]
    signal: Signal
    timestamp: EpochMs


class BtcSnapshot(Shape):
    symbol: Literal["BTCUSDT"]
    price: float
    sma_20: float | None = Field(
        description="The SMA over the configured window (TICKPIPE_SMA_WINDOW trades, 20 by"
        " default; see Snapshot.window), whatever that window is: the name is kept for"
        " compatibility. Null until the window is full."
    )
    recommendation: Signal


class Error(Shape):
    """Every 4xx and 5xx answer: one human-readable sentence."""

    detail: str


class Health(Shape):
    status: Literal["ok"]


class Ready(Shape):
    status: Literal["ready"]
    checks: list[str] = Field(description="The dependencies checked")


class NotReady(Shape):
    detail: str
    status: Literal["unavailable"]
    failing: dict[str, str] = Field(
        description="Failing dependency (`database`, `redis`, `kafka`, a venue) -> `unavailable`"
        " or that it did not answer in time; never hosts, users or exception text"
    )


class TradeFrame(Shape):
    """One processed trade, one JSON text frame of `WS /ws`."""

    model_config = ConfigDict(title="tickpipe WebSocket trade frame")
    type: Literal["trade"]
    exchange: Exchange
    symbol: Symbol
    trade_id: str
    price: float
    quantity: float
    sma: Sma
    signal: Signal
    timestamp: EpochMs
    ingest_time_us: int = Field(
        ge=0, description="When tickpipe received the trade, epoch microseconds (latency)"
    )


WS_PROTOCOL = """Connect to `/ws` (`wss://` behind TLS); optional `?symbols=BTCUSDT,ETH-USD`
(at most 100 symbols, any notation) limits the stream to those symbols. The server sends one JSON
text frame per processed trade, as this schema says, and ignores what the client sends.
Close codes: 1008 (invalid `symbols`), 1013 (server full, too many sockets from one address, or
the client fell too far behind; the reason says which). A full server may instead refuse the
handshake with HTTP 503, a JSON `{"detail": ...}` and `Retry-After`."""


def ws_frame_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a `/ws` frame, with the protocol in its description."""
    schema = TradeFrame.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = WS_PROTOCOL
    return schema
