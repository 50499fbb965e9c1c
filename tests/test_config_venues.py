"""Several venues in one process: TICKPIPE_SOURCE as a list, `venue:symbol` entries, and
TICKPIPE_<VENUE>_URL per venue, with one clear error for each way to get them wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from tickpipe.config import Settings
from tickpipe.core.symbols import split_venue_symbols


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TICKPIPE_"):
            monkeypatch.delenv(name)


def no_defaults(venue: str) -> tuple[str, ...]:
    raise AssertionError(f"no default wanted for {venue}")


def test_several_venues_each_get_their_own_symbols_and_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """binance,coinbase with prefixed symbols and per-venue URLs split as written."""
    monkeypatch.setenv("TICKPIPE_SOURCE", "Binance, coinbase")
    monkeypatch.setenv("TICKPIPE_SYMBOLS", "binance:BTCUSDT,coinbase:BTC-USD,binance:ETHUSDT")
    monkeypatch.setenv("TICKPIPE_BINANCE_URL", "ws://127.0.0.1:1")
    settings = Settings()
    assert settings.venues() == ("binance", "coinbase")
    assert settings.venue_symbols(no_defaults) == {
        "binance": ("BTCUSDT", "ETHUSDT"),
        "coinbase": ("BTC-USD",),
    }
    assert settings.venue_url("binance") == "ws://127.0.0.1:1"
    assert settings.venue_url("coinbase") is None


def test_a_venue_url_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """TICKPIPE_KRAKEN_URL_FILE is read like every other _FILE variable."""
    (tmp_path / "url").write_text("ws://127.0.0.1:2\n")
    monkeypatch.setenv("TICKPIPE_SOURCE", "kraken")
    monkeypatch.setenv("TICKPIPE_KRAKEN_URL_FILE", str(tmp_path / "url"))
    assert Settings().venue_url("kraken") == "ws://127.0.0.1:2"


def test_a_lone_venue_keeps_exchange_url_unprefixed_symbols_and_defaults() -> None:
    """One venue: TICKPIPE_EXCHANGE_URL and plain symbols work, and no symbols means defaults."""
    settings = Settings(source="kraken", symbols="BTC/USD", exchange_url="ws://h:1")
    assert settings.venue_symbols(no_defaults) == {"kraken": ("BTC/USD",)}
    assert settings.venue_url("kraken") == "ws://h:1"
    assert Settings(source="binance").venue_symbols(lambda v: (f"{v}-default",)) == {
        "binance": ("binance-default",)
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": "binance,coinbase"}, "none for binance, coinbase"),
        ({"source": "binance,coinbase", "symbols": "binance:BTCUSDT"}, "none for coinbase"),
        ({"source": "binance,coinbase", "symbols": "BTCUSDT"}, "needs its venue"),
        ({"source": "binance", "symbols": "kraken:BTC/USD"}, "not one of binance"),
        (
            {"source": "binance,kraken", "symbols": "binance:X,kraken:Y", "exchange_url": "ws://h"},
            "TICKPIPE_<VENUE>_URL",
        ),
        ({"source": "Bin ance"}, "not a venue name"),
        ({"source": " , "}, "at least one venue"),
    ],
)
def test_inconsistent_venues_and_symbols_are_refused_with_the_reason(
    changes: dict[str, str], message: str
) -> None:
    """Every mismatch between TICKPIPE_SOURCE, TICKPIPE_SYMBOLS and the URLs is an error."""
    with pytest.raises(ValidationError, match=message.replace("<", ".").replace(">", ".")):
        Settings(**changes)  # type: ignore[arg-type]


def test_a_listed_venues_url_is_no_unknown_variable() -> None:
    """TICKPIPE_COINBASE_URL is known while coinbase is listed; a misspelt one is still named."""
    environ = {
        "TICKPIPE_SOURCE": "binance,coinbase",
        "TICKPIPE_COINBASE_URL": "ws://h",
        "TICKPIPE_BINANCE_URL_FILE": "/run/secrets/url",
        "TICKPIPE_DATABSE_URL": "sqlite:///x",
    }
    assert [line.split()[0] for line in Settings.unknown_variables(environ)] == [
        "TICKPIPE_DATABSE_URL"
    ]


def test_split_venue_symbols_keeps_order_and_drops_repeats() -> None:
    """Entries keep their order per venue; a repeat is dropped; the symbol keeps its colons."""
    assert split_venue_symbols(
        "kraken:BTC/USD, kraken:ETH/USD,kraken:BTC/USD, simulated:A:B", ("kraken", "simulated")
    ) == {"kraken": ("BTC/USD", "ETH/USD"), "simulated": ("A:B",)}
