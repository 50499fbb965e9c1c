"""Symbol rules: one normalized spelling outside the exchange adapters."""

from __future__ import annotations

import functools
import re

_SEPARATORS = str.maketrans("", "", "-/_")
_NORMALIZED = re.compile(r"[A-Z0-9]{2,32}")


class InvalidSymbol(ValueError):
    """A symbol that cannot be normalized (empty, too long, or with characters outside A-Z0-9)."""


@functools.lru_cache(maxsize=4096)  # a handful of symbols, normalized once per message
def normalize_symbol(raw_symbol: str) -> str:
    """`BTC-USD`, `btc/usd`, `BTC_USD` -> `BTCUSD`; raises InvalidSymbol on anything else."""
    if not raw_symbol.isascii():  # str.upper() would map 'ß' to 'SS', 'ı' to 'I'
        raise InvalidSymbol(f"invalid symbol {raw_symbol!r}: expected ASCII letters/digits")
    symbol = raw_symbol.strip().upper().translate(_SEPARATORS)
    if not _NORMALIZED.fullmatch(symbol):
        raise InvalidSymbol(f"invalid symbol {raw_symbol!r}: expected 2-32 letters/digits")
    return symbol


def parse_symbol_list(text: str) -> tuple[str, ...]:
    """Comma-separated symbols in exchange notation; blanks dropped, order kept, no repeats."""
    seen: dict[str, None] = {}
    for part in text.split(","):
        part = part.strip()
        if part:
            seen.setdefault(part, None)
    return tuple(seen)


_VENUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def parse_venue_list(text: str) -> tuple[str, ...]:
    """`binance, Coinbase` -> ("binance", "coinbase"): lower case, order kept, no repeats.
    Raises ValueError for an empty list or a name that cannot be a venue's module name."""
    venues = parse_symbol_list(text.lower())
    if not venues:
        raise ValueError("name at least one venue (simulated, binance, coinbase, kraken, ...)")
    for venue in venues:
        if not _VENUE_NAME.fullmatch(venue):
            raise ValueError(f"{venue!r} is not a venue name (lower-case letters, digits, _)")
    return venues


def split_venue_symbols(text: str, venues: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Symbols per venue from `binance:BTCUSDT,coinbase:BTC-USD` (an entry without a prefix
    belongs to the only venue; with several venues, every entry needs its prefix). A venue
    left without symbols is absent from the result. Raises ValueError naming the entry."""
    by_venue: dict[str, dict[str, None]] = {venue: {} for venue in venues}
    for entry in parse_symbol_list(text):
        prefix, colon, raw_symbol = entry.partition(":")
        if colon:
            venue, raw_symbol = prefix.strip().lower(), raw_symbol.strip()
            if venue not in by_venue:
                listed = ", ".join(venues)
                raise ValueError(f"symbol {entry!r} names venue {venue!r}, not one of {listed}")
        elif len(venues) == 1:
            venue, raw_symbol = venues[0], entry
        else:
            raise ValueError(
                f"symbol {entry!r} needs its venue ({venues[0]}:{entry}) when several are listed"
            )
        if not raw_symbol:
            raise ValueError(f"symbol {entry!r} names no symbol after its venue")
        by_venue[venue].setdefault(raw_symbol, None)
    return {venue: tuple(symbols) for venue, symbols in by_venue.items() if symbols}
