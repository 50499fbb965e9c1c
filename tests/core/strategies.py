"""Hypothesis strategies building valid domain values (shared by core and adapter tests)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from tickpipe.core.trade import (
    EXCHANGES,
    MAX_CLOCK_SKEW_US,
    MAX_DECIMAL_DIGITS,
    MIN_TIME_US,
    Side,
    Trade,
    new_trade,
)

# Trades from 2009 up to the year 2100: plausible exchange clocks.
MAX_TEST_TIME_US = 4_102_444_800_000_000

exchanges = st.sampled_from(sorted(EXCHANGES))
symbols = st.from_regex(r"[A-Z0-9]{2,32}", fullmatch=True)
trade_ids = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]),
    min_size=1,
    max_size=64,
).filter(str.isprintable)
sides = st.sampled_from([None, Side.BUY, Side.SELL])


@st.composite
def exact_decimals(draw: st.DrawFn, max_digits: int = 38, min_exp: int = -20) -> Decimal:
    """Positive decimals as exchanges write them: integer digits + decimal places <= max_digits
    (the validation limit), any scale."""
    exponent = draw(st.integers(min_exp, 10))
    digits = draw(st.integers(1, 10 ** (max_digits - max(exponent, 0)) - 1))
    return Decimal(f"{digits}E{exponent}")


# The validator's corners (each spans exactly 38 digits) and the 35-digit price that a 34-digit
# VWAP division once rounded below itself.
EXTREME_AMOUNTS = [
    Decimal("9" * MAX_DECIMAL_DIGITS),
    Decimal("1E-38"),
    Decimal("0." + "9" * MAX_DECIMAL_DIGITS),
    Decimal("1" + "0" * (MAX_DECIMAL_DIGITS - 2) + "1"),
    Decimal("1." + "0" * (MAX_DECIMAL_DIGITS - 2) + "1"),
    Decimal("10000000000000000000000000000000001"),
]


def extreme_amounts() -> st.SearchStrategy[Decimal]:
    """Anything the validator accepts, down to its limits: 38 digits from 1E-38 to 10^38 - 1."""
    return st.one_of(
        exact_decimals(MAX_DECIMAL_DIGITS, -MAX_DECIMAL_DIGITS), st.sampled_from(EXTREME_AMOUNTS)
    )


@st.composite
def prices(draw: st.DrawFn) -> Decimal:
    """Realistic prices: 1e-10 .. 1e9 with 0-12 decimals (kept textual, e.g. '65000.10')."""
    places = draw(st.integers(0, 12))
    units = draw(st.integers(1, 10 ** (9 + places)))
    return Decimal(f"{units}E-{places}")


@st.composite
def trades(draw: st.DrawFn, key: tuple[str, str] | None = None) -> Trade:
    """A valid trade (built through new_trade, so it passed validation)."""
    exchange, symbol = key if key is not None else (draw(exchanges), draw(symbols))
    ingest_time_us = draw(st.integers(MIN_TIME_US, MAX_TEST_TIME_US))
    exchange_time_us = draw(
        st.integers(MIN_TIME_US, min(ingest_time_us + MAX_CLOCK_SKEW_US, MAX_TEST_TIME_US))
    )
    return new_trade(
        exchange=exchange,
        symbol=symbol,
        trade_id=draw(trade_ids),
        price=draw(exact_decimals()),
        quantity=draw(exact_decimals()),
        side=draw(sides),
        exchange_time_us=exchange_time_us,
        ingest_time_us=ingest_time_us,
    )
