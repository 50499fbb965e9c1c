"""The trade record and its validation.

Money is `Decimal` end to end, kept exactly as the exchange wrote it; timestamps are integer
microseconds since the Unix epoch (UTC) with unit-bearing names.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from tickpipe.core.records import record
from tickpipe.core.symbols import InvalidSymbol, normalize_symbol

# The venues shipped with tickpipe. Any other venue's name only has to look like one (a venue
# is added by writing its module; see adapters/exchanges/registry.py).
EXCHANGES = frozenset({"simulated", "binance", "coinbase", "kraken"})
_EXCHANGE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")

# Trades before 2009 (no crypto market) or more than a day in the future are clock errors.
MIN_TIME_US = 1_230_768_000_000_000  # 2009-01-01T00:00:00Z
MAX_CLOCK_SKEW_US = 86_400_000_000
MAX_TRADE_ID_LENGTH = 64
MAX_TIME_US = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z
MAX_DECIMAL_DIGITS = 38  # integer digits + decimal places: any exchange's amounts, exactly
_ZERO = Decimal(0)


class Side(StrEnum):
    """The taker's side."""

    BUY = "buy"
    SELL = "sell"


class InvalidTrade(ValueError):
    """A trade that fails validation; the message says which field and why."""


@record
class Trade:
    exchange: str
    symbol: str
    trade_id: str
    price: Decimal
    quantity: Decimal
    side: Side | None
    exchange_time_us: int
    ingest_time_us: int

    @property
    def key(self) -> tuple[str, str]:
        """The (exchange, symbol) stream this trade belongs to."""
        return (self.exchange, self.symbol)


def parse_decimal(text: str, field: str) -> Decimal:
    """Exact decimal from text; rejects NaN, infinities, non-positive and absurdly long numbers."""
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise InvalidTrade(f"{field} {text!r} is not a decimal number") from None
    if len(text) <= MAX_DECIMAL_DIGITS and "e" not in text and "E" not in text:
        # The hot path: plain text this short cannot span more digits than allowed.
        if not value.is_finite():
            raise InvalidTrade(f"{field} {value} is not finite")
        if value <= _ZERO:
            raise InvalidTrade(f"{field} {value} is not positive")
        return value
    return check_positive(value, field)


def plain_decimal_text(value: Decimal) -> str:
    """`format(value, "f")`: every digit, never an exponent ('0.00000001', not '1E-8').
    str() is the same text unless it chose an exponent, and costs an eighth."""
    text = str(value)
    return format(value, "f") if "E" in text else text


def check_positive(value: Decimal, field: str) -> Decimal:
    if not value.is_finite():
        raise InvalidTrade(f"{field} {value} is not finite")
    if value <= _ZERO:
        raise InvalidTrade(f"{field} {value} is not positive")
    # Bounding the span (not just the digit count) keeps every window sum exact: see rolling.py.
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, checked above
    integer_digits = max(value.adjusted() + 1, 0)
    decimal_places = max(-exponent, 0)
    if integer_digits + decimal_places > MAX_DECIMAL_DIGITS:
        raise InvalidTrade(
            f"{field} spans {integer_digits + decimal_places} digits (integer digits + decimal"
            f" places); at most {MAX_DECIMAL_DIGITS}"
        )
    return value


def new_trade(
    *,
    exchange: str,
    symbol: str,
    trade_id: str,
    price: Decimal | str,
    quantity: Decimal | str,
    side: Side | str | None,
    exchange_time_us: int,
    ingest_time_us: int,
) -> Trade:
    """Builds a validated Trade; raises InvalidTrade naming the first bad field."""
    if exchange not in EXCHANGES and not _EXCHANGE_NAME.fullmatch(exchange):
        raise InvalidTrade(f"unknown exchange {exchange!r}: not a venue name (a-z, 0-9, _)")
    try:
        normalized = normalize_symbol(symbol)
    except InvalidSymbol as exc:
        raise InvalidTrade(str(exc)) from None
    if normalized != symbol:
        raise InvalidTrade(f"symbol {symbol!r} is not normalized (expected {normalized!r})")
    if not trade_id or len(trade_id) > MAX_TRADE_ID_LENGTH or not trade_id.isprintable():
        raise InvalidTrade(f"trade_id {trade_id!r} must be 1-{MAX_TRADE_ID_LENGTH} printable chars")
    exact_price = (
        parse_decimal(price, "price") if isinstance(price, str) else check_positive(price, "price")
    )
    exact_quantity = (
        parse_decimal(quantity, "quantity")
        if isinstance(quantity, str)
        else check_positive(quantity, "quantity")
    )
    check_time_us(exchange_time_us, ingest_time_us)
    # Positional: this runs once per consumed message, and keywords cost a third more.
    return Trade(
        exchange,
        symbol,
        trade_id,
        exact_price,
        exact_quantity,
        side if side is None or side.__class__ is Side else parse_side(side),
        exchange_time_us,
        ingest_time_us,
    )


_KNOWN_SYMBOLS: set[str] = set()  # symbols found normalized by new_trade (bounded below)
_MAX_KNOWN_SYMBOLS = 4_096


def trade_from_text(
    exchange: str,
    symbol: str,
    trade_id: str,
    price: str,
    quantity: str,
    side: Side | None,
    exchange_time_us: int,
    ingest_time_us: int,
) -> Trade:
    """`new_trade` with amounts as text, positional: the bus decoder's hot path. The same checks
    and the same errors: what the one-expression fast test cannot vouch for goes to new_trade."""
    if (
        exchange in EXCHANGES
        and symbol in _KNOWN_SYMBOLS
        and 0 < len(trade_id) <= MAX_TRADE_ID_LENGTH
        and trade_id.isprintable()
        and len(price) <= MAX_DECIMAL_DIGITS
        and len(quantity) <= MAX_DECIMAL_DIGITS
        and "e" not in price
        and "E" not in price
        and "e" not in quantity
        and "E" not in quantity
        and MIN_TIME_US <= exchange_time_us <= ingest_time_us + MAX_CLOCK_SKEW_US
        and MIN_TIME_US <= ingest_time_us <= MAX_TIME_US
    ):
        try:
            exact_price, exact_quantity = Decimal(price), Decimal(quantity)
        except (InvalidOperation, ValueError):
            pass
        else:
            if (
                exact_price.is_finite()
                and exact_quantity.is_finite()
                and exact_price > _ZERO
                and exact_quantity > _ZERO
            ):
                return Trade(
                    exchange,
                    symbol,
                    trade_id,
                    exact_price,
                    exact_quantity,
                    side,
                    exchange_time_us,
                    ingest_time_us,
                )
    trade = new_trade(
        exchange=exchange,
        symbol=symbol,
        trade_id=trade_id,
        price=price,
        quantity=quantity,
        side=side,
        exchange_time_us=exchange_time_us,
        ingest_time_us=ingest_time_us,
    )
    if len(_KNOWN_SYMBOLS) < _MAX_KNOWN_SYMBOLS:
        _KNOWN_SYMBOLS.add(symbol)
    return trade


def parse_side(side: Side | str | None) -> Side | None:
    if side is None or isinstance(side, Side):
        return side
    try:
        return Side(side.lower())
    except ValueError:
        raise InvalidTrade(f"side {side!r} is not 'buy' or 'sell'") from None


def check_time_us(exchange_time_us: int, ingest_time_us: int) -> None:
    """Exchange time must be a plausible epoch time, not far ahead of when we received it."""
    if exchange_time_us < MIN_TIME_US:
        raise InvalidTrade(f"exchange time {exchange_time_us} us is before 2009")
    if ingest_time_us < MIN_TIME_US:
        raise InvalidTrade(f"ingest time {ingest_time_us} us is before 2009")
    if ingest_time_us > MAX_TIME_US:
        raise InvalidTrade(f"ingest time {ingest_time_us} us is after 2100")
    if exchange_time_us > ingest_time_us + MAX_CLOCK_SKEW_US:
        raise InvalidTrade(f"exchange time {exchange_time_us} us is more than a day ahead")


def time_us_to_datetime(time_us: int) -> datetime:
    seconds, micros = divmod(time_us, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


def datetime_to_time_us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def format_time_us(time_us: int) -> str:
    """ISO-8601 UTC with microseconds and a `Z`, fixed width so text order is time order."""
    seconds, micros = divmod(time_us, 1_000_000)
    prefix = _SECOND_PREFIXES.get(seconds)
    if prefix is None:
        prefix = _second_prefix(seconds)
    return f"{prefix}{micros:06d}Z"


# `YYYY-MM-DDTHH:MM:SS.` by whole second: a batch's trades share a few seconds, and strftime
# through a datetime costs ten times the lookup (the SQLite writer formats two times a row).
_SECOND_PREFIXES: dict[int, str] = {}
_MAX_SECOND_PREFIXES = 4_096


def _second_prefix(seconds: int) -> str:
    prefix = time_us_to_datetime(seconds * 1_000_000).strftime("%Y-%m-%dT%H:%M:%S.")
    if len(_SECOND_PREFIXES) >= _MAX_SECOND_PREFIXES:
        _SECOND_PREFIXES.clear()
    _SECOND_PREFIXES[seconds] = prefix
    return prefix
