"""Symbol rules: one normalized spelling outside the exchange adapters."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.core.symbols import InvalidSymbol, normalize_symbol, parse_symbol_list

_VALID = re.compile(r"[A-Z0-9]{2,32}")
_ASCII_SYMBOL_TEXT = st.text(
    st.sampled_from("ABCXYZabcxyz0189-/_ \t"),
    max_size=40,
)


def naive_normalize(raw_symbol: str) -> str | None:
    """Reference: strip, upper-case, drop - / _; None when the result is not 2-32 A-Z0-9."""
    symbol = "".join(c for c in raw_symbol.strip().upper() if c not in "-/_")
    return symbol if _VALID.fullmatch(symbol) else None


@pytest.mark.parametrize(
    "raw_symbol",
    ["BTC-USD", "btc/usd", "BTC_USD", "btcusd", "BtC-uSd", " BTC-USD ", "B-T-C_U/S/D"],
)
def test_separators_and_case_normalize_to_one_spelling(raw_symbol: str) -> None:
    """Every exchange notation of BTC/USD normalizes to `BTCUSD`."""
    assert normalize_symbol(raw_symbol) == "BTCUSD"


def test_digits_are_kept() -> None:
    """Digits are part of a symbol (`1000SHIB-USDT` -> `1000SHIBUSDT`)."""
    assert normalize_symbol("1000shib-usdt") == "1000SHIBUSDT"


@pytest.mark.parametrize(
    "raw_symbol",
    [
        "",
        "   ",
        "B",
        "-/_",
        "B-",
        "A" * 33,
        "BTC USD",
        "BTC.USD",
        "BTC:USD",
        "BTC\nUSD",
        "BTC'; DROP TABLE trades;--",
        "BTC€",
    ],
)
def test_invalid_symbols_raise_invalid_symbol(raw_symbol: str) -> None:
    """Empty, too short/long, or non-alphanumeric symbols raise InvalidSymbol, naming the input."""
    with pytest.raises(InvalidSymbol, match="invalid symbol"):
        normalize_symbol(raw_symbol)


def test_invalid_symbol_is_a_value_error() -> None:
    """Callers catching ValueError also catch InvalidSymbol."""
    assert issubclass(InvalidSymbol, ValueError)


def test_longest_valid_symbol_is_32_chars() -> None:
    """32 letters/digits are accepted (the upper bound is inclusive)."""
    assert normalize_symbol("a" * 32) == "A" * 32


@pytest.mark.parametrize("raw_symbol", ["ßtc", "ıcp", "ﬁl"])
def test_non_ascii_letters_are_rejected(raw_symbol: str) -> None:
    """Characters outside A-Z0-9 never sneak in through Unicode case mapping."""
    with pytest.raises(InvalidSymbol):
        normalize_symbol(raw_symbol)


@given(_ASCII_SYMBOL_TEXT)
def test_normalize_equals_naive_reference_on_ascii(raw_symbol: str) -> None:
    """On ASCII input, normalize_symbol is exactly upper-case-and-drop-separators, else raises."""
    expected = naive_normalize(raw_symbol)
    if expected is None:
        with pytest.raises(InvalidSymbol):
            normalize_symbol(raw_symbol)
    else:
        assert normalize_symbol(raw_symbol) == expected


@given(st.text(max_size=40))
def test_normalize_of_any_text_is_valid_or_invalid_symbol(raw_symbol: str) -> None:
    """Any text either normalizes to 2-32 A-Z0-9 (a fixed point) or raises InvalidSymbol."""
    try:
        symbol = normalize_symbol(raw_symbol)
    except InvalidSymbol:
        return
    assert _VALID.fullmatch(symbol)
    assert normalize_symbol(symbol) == symbol


@given(_ASCII_SYMBOL_TEXT)
def test_normalize_is_idempotent(raw_symbol: str) -> None:
    """Normalizing a normalized symbol changes nothing."""
    try:
        symbol = normalize_symbol(raw_symbol)
    except InvalidSymbol:
        return
    assert normalize_symbol(symbol) == symbol


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BTCUSDT,ETHUSDT", ("BTCUSDT", "ETHUSDT")),
        (" BTC-USD , ETH-USD ", ("BTC-USD", "ETH-USD")),
        ("BTC/USD,,ETH/USD,", ("BTC/USD", "ETH/USD")),
        ("ETHUSDT,BTCUSDT,ETHUSDT", ("ETHUSDT", "BTCUSDT")),
        ("", ()),
        (" , ,", ()),
    ],
)
def test_parse_symbol_list_drops_blanks_keeps_order_and_first_occurrence(
    text: str, expected: tuple[str, ...]
) -> None:
    """Comma lists: whitespace trimmed, blanks dropped, order kept, repeats removed."""
    assert parse_symbol_list(text) == expected


def test_parse_symbol_list_keeps_the_exchange_notation() -> None:
    """Raw spellings are not normalized (the exchange adapter needs its own notation)."""
    assert parse_symbol_list("btc/usd,XBT/EUR") == ("btc/usd", "XBT/EUR")


@given(st.lists(st.text(st.sampled_from("AB-/ "), max_size=4), max_size=8))
def test_parse_symbol_list_equals_naive_reference(parts: list[str]) -> None:
    """parse_symbol_list equals split-strip-filter-dedupe written the obvious way."""
    expected: list[str] = []
    for part in ",".join(parts).split(","):
        if part.strip() and part.strip() not in expected:
            expected.append(part.strip())
    assert parse_symbol_list(",".join(parts)) == tuple(expected)
