"""What the dashboard's browser tests share: a `tickpipe run` they can kill and restart, waiting
on the page, reading its read-only debug hook (`window.tickpipeDebug`), and mouse and touch
input sent through the Chrome DevTools protocol (real input events, not synthetic DOM ones)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from fixtures.procs import Tickpipe, free_port

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
SIM_RATE = 50  # trades/s over both symbols: lively, and light on a CI runner

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

    def __init__(self, tmp: Path, env: Mapping[str, str] | None = None, streams: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.streams = streams
        self.env = {
            "TICKPIPE_HTTP_PORT": str(self.port),
            "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp}/tickpipe.db",
            "TICKPIPE_SIM_RATE": str(SIM_RATE),
            **(env or {}),
        }
        self.proc: Tickpipe | None = None

    def start(self) -> None:
        self.proc = Tickpipe(["run"], self.env, self.tmp / "run.log")
        self.proc.wait_http(self.url + "/readyz")
        # The picker lists symbols that have traded: wait for them before a page opens.
        wait_until(
            lambda: len(httpx.get(self.url + "/api/v1/symbols", timeout=2).json()) >= self.streams,
            f"{self.streams} streams traded",
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

    def get(self, path: str, **params: str | int) -> Any:
        answer = httpx.get(self.url + path, params=params, timeout=5)
        answer.raise_for_status()
        return answer.json()


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


def debug(driver: WebDriver, name: str, *args: str) -> Any:
    """`window.tickpipeDebug.<name>(...args)`: copies of what the page holds."""
    return driver.execute_script(f"return window.tickpipeDebug.{name}(...arguments)", *args)


def wait_for_debug(
    driver: WebDriver, name: str, check: Callable[[Any], bool], what: str, timeout_s: float = 20.0
) -> Any:
    def probe() -> Any:
        value = debug(driver, name)
        return value if check(value) else None

    try:
        return wait_until(probe, what, timeout_s)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nhook: {debug(driver, name)}") from None


VIEW_CANVAS = {"price": "chart", "candles": "candles", "compare": "compare"}


def plot_box(driver: WebDriver, view: str) -> dict[str, float]:
    """Where a chart's plot area is: the canvas's `left`/`top`/`height` in the viewport, and
    the plot's `x0`/`x1` inside the canvas (CSS px, as the page drew it last)."""
    box = driver.execute_script(
        "const b = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return {left: b.left, top: b.top, height: b.height};",
        VIEW_CANVAS[view],
    )
    drawn = wait_until(lambda: debug(driver, "range", view), f"the {view} chart drawn")
    return {**box, "x0": drawn["plot"]["x0"], "x1": drawn["plot"]["x1"]}


def plot_point(box: dict[str, float], fraction: float) -> tuple[int, int]:
    """Viewport pixel `fraction` across the plot area, mid-height (whole pixels, as a mouse)."""
    x = box["left"] + box["x0"] + fraction * (box["x1"] - box["x0"])
    return round(x), round(box["top"] + box["height"] / 2)


def time_at(box: dict[str, float], view_range: dict[str, Any], x: float) -> float:
    """The time under viewport x in a chart's drawn range."""
    fraction = (x - box["left"] - box["x0"]) / (box["x1"] - box["x0"])
    return float(view_range["t0"] + fraction * (view_range["t1"] - view_range["t0"]))


def wheel(driver: WebDriver, x: float, y: float, delta_y: float) -> None:
    driver.execute_cdp_cmd(
        "Input.dispatchMouseEvent",
        {"type": "mouseWheel", "x": x, "y": y, "deltaX": 0, "deltaY": delta_y},
    )


def mouse_drag(driver: WebDriver, x: float, y: float, dx: float, steps: int = 5) -> None:
    """Left button down at (x, y), moved `dx` to the right in steps, released."""
    send = driver.execute_cdp_cmd
    button = {"button": "left", "clickCount": 1}
    send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
    send("Input.dispatchMouseEvent", {"type": "mousePressed", "x": x, "y": y, **button})
    for step in range(1, steps + 1):
        moved = {"type": "mouseMoved", "x": x + dx * step / steps, "y": y, "buttons": 1}
        send("Input.dispatchMouseEvent", {**moved, "button": "left"})
    send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x + dx, "y": y, **button})


def touch_pinch(driver: WebDriver, x: float, y: float, start_gap: float, end_gap: float) -> None:
    """Two fingers around (x, y), `start_gap` px apart, moved to `end_gap` apart, lifted."""

    def fingers(gap: float) -> list[dict[str, float]]:
        return [{"x": x - gap / 2, "y": y, "id": 1}, {"x": x + gap / 2, "y": y, "id": 2}]

    send = driver.execute_cdp_cmd
    send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": fingers(start_gap)})
    for step in range(1, 6):
        gap = start_gap + (end_gap - start_gap) * step / 5
        send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": fingers(gap)})
    send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def touch_drag(driver: WebDriver, x: float, y: float, dx: float) -> None:
    """One finger from (x, y) moved `dx` to the right, lifted."""
    send = driver.execute_cdp_cmd
    send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for step in range(1, 6):
        point = {"x": x + dx * step / 5, "y": y}
        send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def color_pixels(driver: WebDriver, canvas_id: str, colors: Mapping[str, str]) -> dict[str, int]:
    """How many opaque pixels of the canvas's plot area (left of the value axis, whose tags
    share the series' colours) have each `#rrggbb` colour, within a small tolerance."""
    return dict(
        driver.execute_script(
            """
            const [id, colors] = arguments;
            const c = document.getElementById(id);
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            const xMax = Math.floor(c.width * 0.8);
            const want = Object.entries(colors).map(([name, hex]) =>
              [name, [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16))]);
            const counts = Object.fromEntries(want.map(([name]) => [name, 0]));
            for (let i = 0; i < d.length; i += 4) {
              if (d[i + 3] < 200 || (i / 4) % c.width >= xMax) continue;
              for (const [name, [r, g, b]] of want) {
                if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 30) {
                  counts[name] += 1;
                }
              }
            }
            return counts;
            """,
            canvas_id,
            dict(colors),
        )
    )
