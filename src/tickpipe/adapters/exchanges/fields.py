"""Readers of venue fields. Each returns a clean value or raises FrameRejected with the reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tickpipe.adapters.exchanges.frames import FrameRejected, RejectReason
from tickpipe.core.symbols import InvalidSymbol, normalize_symbol
from tickpipe.core.trade import (
    MAX_TRADE_ID_LENGTH,
    InvalidTrade,
    Side,
    Trade,
    check_positive,
    check_time_us,
    datetime_to_time_us,
    new_trade,
)

# Bounds on the decimal exponent keep values that pass the digit limit (1E-999999) out of the
# database and of float conversions downstream; real prices and sizes are far inside them.
MIN_EXPONENT = -30
MAX_ADJUSTED_EXPONENT = 30

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})"
)
_SHOWN_CHARS = 40


def shown(value: object) -> str:
    """A short, safe rendering of a received value for log lines."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise FrameRejected(RejectReason.UNEXPECTED_SHAPE, f"{what} is not an object")
    return value


def sequence(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise FrameRejected(RejectReason.UNEXPECTED_SHAPE, f"{what} is not a list")
    return value


def required(obj: Mapping[str, Any], key: str) -> Any:
    try:
        value = obj[key]
    except KeyError:
        raise FrameRejected(RejectReason.MISSING_FIELD, f"no {key!r}") from None
    if value is None:
        raise FrameRejected(RejectReason.MISSING_FIELD, f"{key!r} is null")
    return value


def text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise FrameRejected(RejectReason.UNEXPECTED_SHAPE, f"{what} {shown(value)} is not text")
    return value


def exact_decimal(value: object, reason: RejectReason) -> Decimal:
    """A positive, finite decimal from a JSON string, an exact JSON number or an integer."""
    if isinstance(value, bool):  # bool is an int subclass; True is not a price
        raise FrameRejected(reason, f"{value!r} is not a number")
    try:
        if isinstance(value, str | Decimal | int):
            number = Decimal(value)
        else:
            raise FrameRejected(reason, f"{shown(value)} is not a number")
        check_positive(number, reason.removeprefix("invalid_"))
    except (InvalidOperation, ValueError) as exc:  # InvalidTrade is a ValueError
        raise FrameRejected(reason, f"{shown(value)}: {exc}") from None
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or exponent < MIN_EXPONENT:
        raise FrameRejected(reason, f"{shown(value)} has too many decimal places")
    if number.adjusted() > MAX_ADJUSTED_EXPONENT:
        raise FrameRejected(reason, f"{shown(value)} is too large")
    return number


def raw_symbol(value: object) -> tuple[str, str]:
    """(raw symbol as sent, normalized symbol)."""
    raw = text(value, "symbol")
    try:
        return raw, normalize_symbol(raw)
    except InvalidSymbol:
        raise FrameRejected(RejectReason.INVALID_SYMBOL, shown(raw)) from None


def trade_id(value: object) -> str:
    if isinstance(value, bool):
        raise FrameRejected(RejectReason.INVALID_TRADE_ID, repr(value))
    if isinstance(value, int):
        if value < 0:
            raise FrameRejected(RejectReason.INVALID_TRADE_ID, f"negative id {value}")
        value = str(value)
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_TRADE_ID_LENGTH
        or not value.isprintable()
    ):
        raise FrameRejected(RejectReason.INVALID_TRADE_ID, shown(value))
    return value


def side(value: object, taker_sides: Mapping[str, Side]) -> Side:
    taker_side = taker_sides.get(value) if isinstance(value, str) else None
    if taker_side is None:
        raise FrameRejected(RejectReason.INVALID_SIDE, shown(value))
    return taker_side


def epoch_ms_to_us(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameRejected(RejectReason.INVALID_TIME, f"{shown(value)} is not epoch milliseconds")
    return value * 1000


def rfc3339_to_us(value: object) -> int:
    """`2023-02-09T20:19:35.39625135Z` -> microseconds; digits beyond microseconds are cut."""
    if not isinstance(value, str) or not (match := _RFC3339.fullmatch(value)):
        raise FrameRejected(RejectReason.INVALID_TIME, f"{shown(value)} is not an RFC 3339 time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        raise FrameRejected(
            RejectReason.INVALID_TIME, f"{shown(value)} is not a real time"
        ) from None
    offset_s = 0
    if zone not in ("Z", "z"):
        offset_s = (int(zone[1:3]) * 60 + int(zone[4:6])) * 60 * (1 if zone[0] == "+" else -1)
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime_to_time_us(moment) - offset_s * 1_000_000 + micros


def plausible_time_us(exchange_time_us: int, ingest_time_us: int) -> int:
    try:
        check_time_us(exchange_time_us, ingest_time_us)
    except InvalidTrade as exc:
        raise FrameRejected(RejectReason.INVALID_TIME, str(exc)) from None
    return exchange_time_us


def build_trade(
    *,
    exchange: str,
    symbol: str,
    trade_id: str,
    price: Decimal,
    quantity: Decimal,
    side: Side,
    exchange_time_us: int,
    ingest_time_us: int,
) -> Trade:
    """The core's validated Trade from fields already read by the functions above."""
    try:
        return new_trade(
            exchange=exchange,
            symbol=symbol,
            trade_id=trade_id,
            price=price,
            quantity=quantity,
            side=side,
            exchange_time_us=exchange_time_us,
            ingest_time_us=ingest_time_us,
        )
    except InvalidTrade as exc:  # not expected: every field was checked above
        raise FrameRejected(RejectReason.PARSER_ERROR, str(exc)) from None
