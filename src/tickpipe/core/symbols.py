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
