"""The dashboard in a real headless Chromium, against a real `tickpipe run` on the embedded default.

Screenshots land in artifacts/ (one per test, CI uploads them); docs/dashboard.png, the README's
picture, is written when missing or when TICKPIPE_UPDATE_SCREENSHOT=1.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from e2e.browser import console_errors, emulate_phone, require_browser
from e2e.dashboard import (
    ARTIFACTS,
    REPO,
    Server,
    color_pixels,
    debug,
    mouse_drag,
    page_state,
    plot_box,
    plot_point,
    time_at,
    touch_drag,
    touch_pinch,
    wait_for_debug,
    wait_for_page,
    wait_until,
    wheel,
)

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_SCREENSHOT = REPO / "docs" / "dashboard.png"

# Pixels of the chart's price line (#38bdf8) and SMA line (#f59e0b), left of the price axis so
# the last-price tag (also #38bdf8) does not count.
CHART_PIXELS_JS = """
const c = document.getElementById("chart");
const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
const xMax = Math.floor(c.width * 0.8);
let painted = 0, price = 0, sma = 0;
for (let i = 0; i < d.length; i += 4) {
  const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]];
  if (a === 0) continue;
  painted++;
  if ((i / 4) % c.width >= xMax || a < 180) continue;
  if (r < 110 && g > 150 && b > 200) price++;
  if (r > 200 && g > 120 && g < 190 && b < 70) sma++;
}
return {painted, price, sma, width: c.width, height: c.height, cssWidth: c.clientWidth};
"""


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    """Fails at once, before any server starts, when Chromium or Selenium is missing."""
    require_browser()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared `tickpipe run` for the tests that only watch it."""
    running = Server(tmp_path_factory.mktemp("dashboard"))
    try:
        running.start()
        yield running
    finally:
        running.kill()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A `tickpipe run` of the test's own, for tests that pause or kill it."""
    running = Server(tmp_path)
    try:
        running.start()
        yield running
    finally:
        if running.proc is not None:
            running.resume()  # a stopped process would ignore nothing but SIGKILL; be tidy
        running.kill()


def open_dashboard(driver: WebDriver, server: Server, suffix: str = "") -> dict[str, Any]:
    driver.get(server.url + "/" + suffix)
    return wait_for_page(
        driver,
        lambda s: s["status"] == "live" and s["rows"] and s["points"] > 20,
        "the dashboard to go live with data",
    )


def test_chart_draws_price_and_sma_lines_from_history_and_live(
    server: Server, browser: WebDriver
) -> None:
    """The canvas shows the price and SMA lines and BUY/SELL markers, and keeps growing live."""
    first = open_dashboard(browser, server)
    grown = wait_for_page(
        browser, lambda s: s["points"] > first["points"] + 25, "live trades to extend the chart"
    )
    wait_for_page(browser, lambda s: s["markers"] > 0, "a BUY/SELL marker where the signal flips")
    pixels = browser.execute_script(CHART_PIXELS_JS)
    assert pixels["price"] > 300, f"price line not drawn: {pixels}"
    assert pixels["sma"] > 150, f"SMA line not drawn: {pixels}"
    assert grown["points"] <= 2000

    time.sleep(3)  # a fuller chart for the picture
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    if not DOCS_SCREENSHOT.exists() or os.environ.get("TICKPIPE_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / "dashboard.png", DOCS_SCREENSHOT)
    assert console_errors(browser) == []


def test_snapshot_and_table_follow_the_stream_without_gaps(
    server: Server, browser: WebDriver
) -> None:
    """The snapshot advances and equals the stored trade; the table holds consecutive trades."""
    first = open_dashboard(browser, server)
    later = wait_for_page(
        browser,
        lambda s: s["tradeId"] != first["tradeId"] and s["rows"],
        "the snapshot to move to a newer trade",
    )
    assert later["symbol"] == "BTCUSDT"
    assert int(later["tradeId"]) > int(first["tradeId"])

    stored = httpx.get(server.url + "/api/v1/history/BTCUSDT", params={"limit": 1000}).json()
    row = next(t for t in stored if t["trade_id"] == later["tradeId"])
    assert float(later["price"]) == row["price"]
    assert later["sma"] == ("" if row["sma"] is None else repr(row["sma"]).removesuffix(".0"))
    assert later["signal"] == row["signal"]

    # History seeded the table and live frames extended it: no trade lost or doubled between.
    ids = [int(trade_id) for symbol, trade_id in later["rows"]]
    assert {symbol for symbol, _ in later["rows"]} == {"BTCUSDT"}
    assert len(ids) == 50
    assert ids == list(range(ids[0], ids[0] - 50, -1)), ids


def test_picking_another_symbol_switches_the_stream(server: Server, browser: WebDriver) -> None:
    """Choosing ETHUSDT in the picker swaps snapshot, table and chart to ETHUSDT's live trades."""
    from selenium.webdriver.support.select import Select

    open_dashboard(browser, server)
    picker = Select(browser.find_element("id", "symbol-picker"))
    groups = browser.execute_script(
        "return [...document.querySelectorAll('#symbol-picker optgroup')]"
        ".map(g => [g.label, [...g.children].map(o => o.textContent)])"
    )
    assert groups == [["simulated", ["BTCUSDT", "ETHUSDT"]]]

    picker.select_by_value("simulated:ETHUSDT")
    switched = wait_for_page(
        browser,
        lambda s: (
            s["symbol"] == "ETHUSDT"
            and len(s["rows"]) >= 10
            and all(symbol == "ETHUSDT" for symbol, _ in s["rows"])
        ),
        "snapshot and table to show ETHUSDT",
    )
    wait_for_page(
        browser,
        lambda s: s["tradeId"] != switched["tradeId"],
        "a live ETHUSDT trade after the switch",
    )
    assert browser.execute_script("return location.hash") == "#simulated:ETHUSDT"
    assert 3000 < float(switched["price"]) < 4000  # ETH's simulated price, not BTC's
    assert console_errors(browser) == []


def test_a_silent_stream_shows_stale_then_live_again(
    own_server: Server, browser: WebDriver
) -> None:
    """When trades stop arriving the status says stale; when they resume it says live."""
    open_dashboard(browser, own_server, "?stale=2")
    own_server.pause()
    try:
        wait_for_page(browser, lambda s: s["status"] == "stale", "the stale state", 10)
    finally:
        own_server.resume()
    wait_for_page(browser, lambda s: s["status"] == "live", "live again after resuming", 10)


def test_killing_and_restarting_the_server_shows_reconnecting_then_live(
    own_server: Server, browser: WebDriver
) -> None:
    """A crashed gateway shows reconnecting; the page comes back by itself once it restarts."""
    before = open_dashboard(browser, own_server)
    own_server.kill()
    wait_for_page(browser, lambda s: s["status"] == "reconnecting", "the reconnecting state", 10)
    time.sleep(3)  # a few failed attempts, so the backoff has grown
    assert page_state(browser)["status"] == "reconnecting"

    own_server.start()
    after = wait_for_page(
        browser,
        lambda s: s["status"] == "live" and s["time"] > before["time"],
        "live again with trades newer than before the crash",
        30,
    )
    assert after["symbol"] == "BTCUSDT"


def test_phone_width_stacks_the_panels_without_sideways_scrolling(
    server: Server, browser: WebDriver
) -> None:
    """At 390 px the snapshot, chart and table stack in one column and fit the screen's width."""
    emulate_phone(browser)
    open_dashboard(browser, server)
    layout = browser.execute_script("""
        const box = (s) => document.querySelector(s).getBoundingClientRect();
        return {inner: innerWidth, scroll: document.documentElement.scrollWidth,
                snapshot: box("#snapshot").top, chart: box("#chart").top,
                trades: box("#trades").top, chartWidth: box("#chart").width};
    """)
    assert layout["inner"] == 390
    assert layout["scroll"] <= layout["inner"], layout
    assert layout["snapshot"] < layout["chart"] < layout["trades"], layout
    assert layout["chartWidth"] > 300, layout
    pixels = browser.execute_script(CHART_PIXELS_JS)
    assert pixels["width"] == round(pixels["cssWidth"] * 3), f"canvas not HiDPI: {pixels}"
    assert pixels["price"] > 300, pixels
    browser.save_screenshot(str(ARTIFACTS / "dashboard-phone.png"))


# ---------------------------------------------------------------- candles, zoom and pan


def open_view(driver: WebDriver, server: Server, query: str) -> None:
    driver.get(f"{server.url}/?{query}#simulated:BTCUSDT")
    wait_for_page(driver, lambda s: s["status"] == "live" and s["rows"], "the dashboard to go live")


def assert_match_the_api(server: Server, candles: list[dict[str, Any]], interval: str) -> None:
    """The page's candles, all but the forming one, equal /api/v1/candles over the same span
    (same buckets, OHLC and trade counts exact, volume to float rounding); the forming one has
    the stored candle's start and open."""
    *closed, forming = candles
    query = {"interval": interval, "exchange": "simulated", "limit": 1000}
    if closed:
        api = server.get(
            "/api/v1/candles/BTCUSDT", start=closed[0]["t"], end=closed[-1]["t"], **query
        )
        assert [c["t"] for c in closed] == [c["timestamp"] for c in api]
        fields = ("open", "high", "low", "close")
        for mine, stored in zip(closed, api, strict=True):
            assert [mine[f] for f in fields] == [stored[f] for f in fields], (mine, stored)
            assert mine["count"] == stored["trade_count"], (mine, stored)
            assert math.isclose(mine["volume"], stored["volume"], rel_tol=1e-9), (mine, stored)
    (stored,) = server.get("/api/v1/candles/BTCUSDT", start=forming["t"], end=forming["t"], **query)
    assert (forming["t"], forming["open"]) == (stored["timestamp"], stored["open"])


LATEST_JS = """
const candle = tickpipeDebug.candles().candles.at(-1);
const time = Date.parse(document.getElementById("snapshot-time").dateTime);
return {candle, time, price: Number(document.getElementById("snapshot-price").dataset.value)};
"""


def test_candles_match_the_api_and_grow_with_live_trades(
    server: Server, browser: WebDriver
) -> None:
    """The candle view holds /api/v1/candles' bars for the picked interval; live trades extend the
    forming candle and start the next on the interval boundary without a re-read; picking 1m
    reads the 1m candles."""
    open_view(browser, server, "view=candles&interval=1s")
    loaded = wait_for_debug(
        browser,
        "candles",
        lambda c: c["interval"] == "1s" and c["loads"] >= 1 and len(c["candles"]) >= 5,
        "1s candles read from the API",
    )
    grown = wait_for_debug(
        browser,
        "candles",
        lambda c: (
            len(c["candles"]) >= len(loaded["candles"]) + 3
            and not any(candle["provisional"] for candle in c["candles"][:-1])
        ),
        "three more candles built from live trades, the closed ones settled",
    )
    assert grown["loads"] == loaded["loads"], "live trades must not re-read the candles"
    assert [c["stored"] for c in grown["candles"]].count(False) >= 3
    latest = browser.execute_script(LATEST_JS)
    assert latest["candle"]["close"] == latest["price"], latest
    assert latest["candle"]["t"] == latest["time"] - latest["time"] % 1000, latest
    assert_match_the_api(server, grown["candles"], "1s")
    pixels = color_pixels(browser, "candles", {"up": "#22c55e", "down": "#f43f5e"})
    # The simulated market may fall (or rise) for a while: the colours follow the data, and the
    # newest closed candles are always on screen in the live view.
    recent = grown["candles"][-6:-1]
    assert pixels["up"] + pixels["down"] > 40, f"no candle drawn: {pixels}"
    if any(c["close"] > c["open"] for c in recent):
        assert pixels["up"] > 0, f"no rising candle drawn: {pixels}"
    if any(c["close"] < c["open"] for c in recent):
        assert pixels["down"] > 0, f"no falling candle drawn: {pixels}"

    browser.find_element("css selector", '#intervals [data-interval="1m"]').click()
    minute = wait_for_debug(
        browser,
        "candles",
        lambda c: c["interval"] == "1m" and c["loads"] > grown["loads"] and not c["loading"],
        "the 1m candles read from the API",
    )
    assert "interval=1m" in browser.current_url
    assert minute["candles"]
    assert all(c["t"] % 60_000 == 0 for c in minute["candles"])
    assert_match_the_api(server, minute["candles"], "1m")
    assert console_errors(browser) == []


def test_wheel_zooms_around_the_cursor_and_dragging_pans(
    server: Server, browser: WebDriver
) -> None:
    """On the candle view a drag pans back in time, the wheel zooms keeping the time under the
    cursor in place, "back to live" follows the newest candle again; the wheel zooms the price
    line too."""
    from selenium.webdriver.common.by import By

    open_view(browser, server, "view=candles&interval=1s")
    # Enough history that the pan and zoom below stay clear of the oldest candle, where a parked
    # view stops (a module's earlier tests have usually let this many pass already).
    wait_for_debug(browser, "candles", lambda c: len(c["candles"]) >= 35, "35 1s candles", 45)
    box = plot_box(browser, "candles")
    live = debug(browser, "range", "candles")
    assert live["live"]
    span = live["t1"] - live["t0"]
    ms_per_px = span / (box["x1"] - box["x0"])
    back_to_live = browser.find_element(By.ID, "back-to-live")
    assert not back_to_live.is_displayed()

    x, y = plot_point(box, 0.5)
    mouse_drag(browser, x, y, 150)
    panned = debug(browser, "range", "candles")
    assert not panned["live"]
    assert panned["t1"] - panned["t0"] == pytest.approx(span)
    # The live edge may move on by a candle or two between the two reads.
    assert live["t1"] - panned["t1"] == pytest.approx(150 * ms_per_px, abs=2500)
    assert back_to_live.is_displayed()

    x, y = plot_point(box, 0.9)
    anchor = time_at(box, panned, x)
    wheel(browser, x, y, -400)
    zoomed = debug(browser, "range", "candles")
    assert zoomed["t1"] - zoomed["t0"] == pytest.approx(span * math.exp(-0.6), rel=1e-6)
    assert time_at(box, zoomed, x) == pytest.approx(anchor, abs=1), "the cursor's time moved"
    wheel(browser, x, y, 400)
    unzoomed = debug(browser, "range", "candles")
    assert unzoomed["t1"] - unzoomed["t0"] == pytest.approx(span, rel=1e-6)

    back_to_live.click()
    wait_for_debug(
        browser,
        "range",
        lambda r: r["live"] and r["t1"] >= live["t1"],
        "the candles to follow live again",
    )
    assert not back_to_live.is_displayed()

    browser.find_element(By.ID, "tab-price").click()
    before = wait_for_page(browser, lambda s: s["points"] > 100, "the price line")
    price_box = plot_box(browser, "price")
    line = debug(browser, "range", "price")
    x, y = plot_point(price_box, 0.5)
    wheel(browser, x, y, -400)
    after = debug(browser, "range", "price")
    assert not after["live"]
    ratio = (after["t1"] - after["t0"]) / (line["t1"] - line["t0"])
    assert ratio == pytest.approx(math.exp(-0.6), rel=0.05)  # the line grew a little meanwhile
    assert page_state(browser)["points"] < before["points"]
    assert console_errors(browser) == []


def test_touch_pinch_zooms_the_price_line_and_a_finger_pans_it(
    server: Server, own_browser: WebDriver
) -> None:
    """Two fingers spreading to three times their distance zoom the price line 3x around
    them; one finger dragged right pans back in time."""
    open_dashboard(own_browser, server)
    before = wait_for_page(own_browser, lambda s: s["points"] > 100, "the price line")
    box = plot_box(own_browser, "price")
    line = debug(own_browser, "range", "price")
    x, y = plot_point(box, 0.5)
    touch_pinch(own_browser, x, y, 100, 300)
    pinched = debug(own_browser, "range", "price")
    assert not pinched["live"]
    ratio = (pinched["t1"] - pinched["t0"]) / (line["t1"] - line["t0"])
    assert ratio == pytest.approx(1 / 3, rel=0.05)  # the line grew a little meanwhile
    assert page_state(own_browser)["points"] < before["points"]

    touch_drag(own_browser, x, y, 120)
    dragged = debug(own_browser, "range", "price")
    span = pinched["t1"] - pinched["t0"]
    assert dragged["t1"] - dragged["t0"] == pytest.approx(span)
    assert pinched["t1"] - dragged["t1"] == pytest.approx(120 * span / (box["x1"] - box["x0"]))
    assert console_errors(own_browser) == []


def test_console_errors_catch_a_csp_violation(server: Server, browser: WebDriver) -> None:
    """The console check the other tests end with sees a CSP violation: an inline script added
    to the page is refused and reported."""
    browser.get(server.url + "/")
    browser.execute_script(
        "const s = document.createElement('script');"
        "s.textContent = 'window.inlineRan = true';"
        "document.head.append(s);"
    )
    errors = console_errors(browser)
    assert any("Content Security Policy" in error for error in errors), errors
    assert browser.execute_script("return window.inlineRan === undefined")


def test_panning_past_the_oldest_candle_reads_older_ones(
    server: Server, browser: WebDriver
) -> None:
    """With pages of 10 candles (`?candles=10`) on a phone-sized screen, the page reads as many
    pages as fill the chart, and a finger dragging back past the oldest candle reads the pages
    before it; together they equal the API's candles."""
    wait_until(
        lambda: len(server.get("/api/v1/candles/BTCUSDT", interval="1s", limit=1000)) >= 60,
        "a minute of trades: several pages of candles",
        70,
    )
    emulate_phone(browser)  # a narrow chart shows fewer candles than the server holds
    open_view(browser, server, "view=candles&interval=1s&candles=10")

    def filled() -> dict[str, Any] | None:
        held = debug(browser, "candles")
        shown = debug(browser, "range", "candles")
        ready = held["candles"] and shown and shown["t0"] >= held["candles"][0]["t"]
        return held if ready else None

    first = wait_until(filled, "the chart filled with candles, page by page")
    assert len(first["candles"]) >= 20, "more than one page of ten"
    x, y = plot_point(plot_box(browser, "candles"), 0.5)
    touch_drag(browser, x, y, 200)
    older = wait_for_debug(
        browser,
        "candles",
        lambda c: c["candles"][0]["t"] <= first["candles"][0]["t"] - 10_000,
        "older candles in front",
    )
    assert older["loads"] == first["loads"], "older pages are added, not a new read"
    assert_match_the_api(server, older["candles"], "1s")
    assert console_errors(browser) == []
