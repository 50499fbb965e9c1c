"""What a venue parser returns for one raw frame: trades, control events and rejections.

Parsers are pure: `parse_frame(frame, ingest_time_us) -> ParseResult`. They never raise on bad
input; every dropped item comes back as a `Rejection` with a reason from `RejectReason`, a small
fixed vocabulary because it is a metric label.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tickpipe.core.trade import Trade


class RejectReason(StrEnum):
    INVALID_JSON = "invalid_json"
    UNEXPECTED_SHAPE = "unexpected_shape"
    MISSING_FIELD = "missing_field"
    INVALID_SYMBOL = "invalid_symbol"
    UNKNOWN_SYMBOL = "unknown_symbol"
    INVALID_TRADE_ID = "invalid_trade_id"
    INVALID_PRICE = "invalid_price"
    INVALID_QUANTITY = "invalid_quantity"
    INVALID_SIDE = "invalid_side"
    INVALID_TIME = "invalid_time"
    OVERSIZE = "oversize"
    PARSER_ERROR = "parser_error"


class FrameRejected(Exception):
    """Raised inside parsers (never out of `parse_frame`) to drop a frame or one item of it."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EventKind(StrEnum):
    ACK = "ack"  # the venue confirmed a subscription
    HEARTBEAT = "heartbeat"
    ERROR = "error"  # the venue refused a request (e.g. an unknown symbol)
    SHUTDOWN = "shutdown"  # the venue asks us to reconnect now
    INFO = "info"  # anything else the venue may send that carries no trade


@dataclass(frozen=True, slots=True)
class ControlEvent:
    kind: EventKind
    detail: str = ""
    raw_symbols: tuple[str, ...] = ()  # the venue's spelling, e.g. of a rejected symbol


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True)
class ParseResult:
    trades: tuple[Trade, ...] = ()
    events: tuple[ControlEvent, ...] = ()
    rejections: tuple[Rejection, ...] = ()

    @classmethod
    def rejected(cls, error: FrameRejected) -> ParseResult:
        return cls(rejections=(Rejection(error.reason, error.detail),))

    @classmethod
    def event(
        cls, kind: EventKind, detail: str = "", raw_symbols: tuple[str, ...] = ()
    ) -> ParseResult:
        return cls(events=(ControlEvent(kind, detail, raw_symbols),))
