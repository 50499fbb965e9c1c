"""The dashboard's compare view in a real headless Chromium: `tickpipe run` following a local
Binance and a local Coinbase (servers speaking each venue's protocol), BTC on both.

docs/dashboard-compare.png, the README's picture, is written when missing or when
TICKPIPE_UPDATE_SCREENSHOT=1."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

from adapters.exchanges.fake_exchange import FakeExchange, Script, Session, run_in_thread
from e2e.browser import console_errors, require_browser
from e2e.dashboard import ARTIFACTS, REPO, Server, color_pixels, debug, wait_for_debug, wait_until

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_SCREENSHOT = REPO / "docs" / "dashboard-compare.png"  # the README's picture of this view
FIRST_TRADES = 40  # per venue, round-robin over its two symbols
MORE_TRADES = 10
# Plausible quotes, so the spread is a few dollars (the fakes' default prices jump wildly).
BINANCE_PRICES = ("65000.10", "3400.50", "65002.55", "3401.25", "64998.00", "3399.75")
COINBASE_PRICES = ("65010.25", "3402.00", "65008.05", "3401.50", "65012.75", "3400.10")


class Venues:
    """Fake Binance and Coinbase, both streaming BTC and ETH, and `tickpipe run` following them.
    Each venue sends FIRST_TRADES at once and MORE_TRADES when `more` is set."""

    def __init__(
        self,
        server: Server,
        binance: FakeExchange,
        coinbase: FakeExchange,
        more: threading.Event,
    ) -> None:
        self.server = server
        self.binance = binance
        self.coinbase = coinbase
        self.more = more


def trades_then_more(more: threading.Event) -> Script:
    async def script(session: Session) -> None:
        await session.send_trades(FIRST_TRADES, interval_s=0.03)
        while not more.is_set():
            await asyncio.sleep(0.02)
        await session.send_trades(MORE_TRADES, interval_s=0.03)

    return script


async def hold(session: Session) -> None:
    """A reconnect gets no trade again (the venue's history is not replayed)."""


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    """Fails at once, before any server starts, when Chromium or Selenium is missing."""
    require_browser()


@pytest.fixture(scope="module")
def venues(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venues]:
    """The two fake venues and `tickpipe run`, once both have traded both symbols."""
    more = threading.Event()
    script = trades_then_more(more)
    binance = FakeExchange(
        "binance", ["BTCUSDT", "ETHUSDT"], scripts=[script, hold], prices=BINANCE_PRICES
    )
    coinbase = FakeExchange(
        "coinbase", ["BTC-USD", "ETH-USD"], scripts=[script, hold], prices=COINBASE_PRICES
    )
    with ExitStack() as stack:
        stack.enter_context(run_in_thread(binance))
        stack.enter_context(run_in_thread(coinbase))
        env = {
            "TICKPIPE_SOURCE": "binance,coinbase",
            "TICKPIPE_SYMBOLS": "binance:BTCUSDT,binance:ETHUSDT,coinbase:BTC-USD,coinbase:ETH-USD",
            "TICKPIPE_BINANCE_URL": binance.url,
            "TICKPIPE_COINBASE_URL": coinbase.url,
        }
        server = Server(tmp_path_factory.mktemp("venues"), env, streams=4)
        stack.callback(server.kill)
        server.start()
        yield Venues(server, binance, coinbase, more)


def stored_last_prices(server: Server) -> tuple[float, float]:
    binance = server.get("/api/v1/snapshot/BTCUSDT", exchange="binance")
    coinbase = server.get("/api/v1/snapshot/BTCUSD", exchange="coinbase")
    return binance["price"], coinbase["price"]


def shows_stored_prices(server: Server, compare: dict[str, Any]) -> bool:
    return (compare["a"], compare["b"]) == stored_last_prices(server)


def assert_spread_of_the_last_prices(driver: WebDriver, compare: dict[str, Any]) -> None:
    """The spread on screen is coinbase's last price minus binance's, and in bps of binance's."""
    shown = driver.execute_script(
        "const v = (id) => Number(document.getElementById(id).dataset.value);"
        "return {a: v('compare-a-price'), b: v('compare-b-price'),"
        " spread: v('compare-spread'), bps: v('compare-spread-bps'),"
        " text: document.getElementById('compare-spread').textContent};"
    )
    a, b = compare["a"], compare["b"]
    assert (shown["a"], shown["b"]) == (a, b)
    assert math.isclose(shown["spread"], b - a, rel_tol=1e-12)
    assert math.isclose(shown["bps"], (b - a) / a * 1e4, rel_tol=1e-12)
    assert shown["text"] == f"{'+' if b >= a else '−'}{abs(b - a):,.2f}"


def test_compare_shows_two_venues_of_one_asset_and_their_spread(
    venues: Venues, browser: WebDriver
) -> None:
    """Binance BTCUSDT against Coinbase BTCUSD: the picker offers only other venues' BTC, both
    lines are drawn on one time axis with the spread below, and the spread on screen follows
    the two last stored prices, also after new trades."""
    server = venues.server
    browser.get(f"{server.url}/?view=compare#binance:BTCUSDT")
    options = wait_until(
        lambda: browser.execute_script(
            "return [...document.querySelectorAll('#compare-picker optgroup')]"
            ".map(g => [g.label, [...g.children].map(o => o.value)])"
        ),
        "the compare picker to list the other venue",
    )
    assert options == [["coinbase", ["coinbase:BTCUSD"]]]
    first = wait_for_debug(
        browser,
        "compare",
        lambda c: (
            c["pair"] == ["binance:BTCUSDT", "coinbase:BTCUSD"] and shows_stored_prices(server, c)
        ),
        "both streams' last stored prices",
    )
    assert "vs=coinbase%3ABTCUSD" in browser.current_url
    assert_spread_of_the_last_prices(browser, first)
    assert debug(browser, "range", "compare")["live"]
    pixels = color_pixels(
        browser, "compare", {"binance": "#38bdf8", "coinbase": "#c084fc", "spread": "#f59e0b"}
    )
    assert min(pixels.values()) > 40, f"a line is missing: {pixels}"

    venues.more.set()
    later = wait_for_debug(
        browser,
        "compare",
        lambda c: (
            len(venues.binance.history)
            == len(venues.coinbase.history)
            == FIRST_TRADES + MORE_TRADES
            and shows_stored_prices(server, c)
        ),
        "the newer trades' prices",
    )
    assert (later["a"], later["b"]) != (first["a"], first["b"])
    assert_spread_of_the_last_prices(browser, later)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-compare.png"))
    if not DOCS_SCREENSHOT.exists() or os.environ.get("TICKPIPE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "dashboard-compare.png", DOCS_SCREENSHOT)
    assert console_errors(browser) == []
