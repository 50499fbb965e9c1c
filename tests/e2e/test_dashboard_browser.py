"""The dashboard in a real headless Chromium, against a real `tickpipe run` on the embedded default.

Screenshots land in artifacts/ (one per test, CI uploads them); docs/dashboard.png, the README's
picture, is written when missing or when TICKPIPE_UPDATE_SCREENSHOT=1.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from e2e.browser import console_errors, emulate_phone, open_chromium, require_browser
from fixtures.procs import Tickpipe, free_port

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
DOCS_SCREENSHOT = REPO / "docs" / "dashboard.png"
SIM_RATE = 50  # trades/s over both symbols: lively, and light on a CI runner

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
STATE_JS = """
const q = (s) => document.querySelector(s);
return {
  status: q("#status").dataset.state,
  statusText: q("#status-text").textContent,
  symbol: q("#snapshot").dataset.symbol,
  tradeId: q("#snapshot").dataset.tradeId,
  price: q("#snapshot-price").dataset.value,
  sma: q("#snapshot-sma").dataset.value,
  signal: q("#snapshot-signal").dataset.signal,
  time: q("#snapshot-time").dateTime,
  points: Number(q("#chart").dataset.points),
  markers: Number(q("#chart").dataset.markers),
  rows: [...document.querySelectorAll("#trades tbody tr")].map(
    (tr) => [tr.dataset.symbol, tr.dataset.tradeId]),
};
"""


class Server:
    """`tickpipe run` on a fixed port and SQLite file: it can be killed and started again."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.env = {
            "TICKPIPE_HTTP_PORT": str(self.port),
            "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp}/tickpipe.db",
            "TICKPIPE_SIM_RATE": str(SIM_RATE),
        }
        self.proc: Tickpipe | None = None

    def start(self) -> None:
        self.proc = Tickpipe(["run"], self.env, self.tmp / "run.log")
        self.proc.wait_http(self.url + "/readyz")
        # The picker lists symbols that have traded: wait for both before a page opens.
        wait_until(
            lambda: len(httpx.get(self.url + "/api/v1/symbols", timeout=2).json()) >= 2,
            "both simulated symbols traded",
        )

    def kill(self) -> None:
        """SIGKILL, as a crash would: no goodbye frames to the browser."""
        if self.proc is not None:
            self.proc.process.kill()
            self.proc.terminate()  # reaps it and closes its log file
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        return (self.tmp / "run.log").read_text(errors="replace")


def wait_until(probe: Callable[[], Any], what: str, timeout_s: float = 20.0) -> Any:
    """Polls `probe` until it returns something truthy; fails with its last answer."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (httpx.HTTPError, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")


def page_state(driver: WebDriver) -> dict[str, Any]:
    return dict(driver.execute_script(STATE_JS))


def wait_for_page(
    driver: WebDriver, check: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = 20.0
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        state = page_state(driver)
        return state if check(state) else None

    try:
        return wait_until(probe, what, timeout_s)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\npage: {page_state(driver)}") from None


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


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """A fresh headless Chromium; its last screen is kept as artifacts/browser/<test>.png."""
    with open_chromium(tmp_path / "chromium-profile") as driver:
        try:
            yield driver
        finally:
            (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "browser" / f"{request.node.name}.png"))


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
