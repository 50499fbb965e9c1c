"""A Python client of the tickpipe gateway, for scripts and notebooks.

    from tickpipe.client import Client
    client = Client("http://127.0.0.1:8000")
    trades = client.history("BTCUSDT", start="2024-05-01T00:00:00Z")   # every page
    frame = client.candles_frame("BTCUSDT", interval="1m")              # needs tickpipe[pandas]
    async for update in client.stream(["BTCUSDT"]): ...

HTTP goes through the standard library (urllib), the live stream through `websockets` (already
a dependency of tickpipe), so the client adds nothing to install; pandas is the optional
`tickpipe[pandas]` extra. Numbers are read as `Decimal`: the gateway writes prices as JSON
numbers (the shortest text of a float), and the client keeps that text's digits exactly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)

Moment = str | int | datetime | None  # ISO-8601, epoch milliseconds, or an aware datetime
PAGE_LIMIT = 1_000  # the gateway's largest page
CANDLE_LIMIT = 1_000
INTERVAL_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "1d": 86_400_000,
}
PANDAS_MISSING = "history_frame/candles_frame need pandas: pip install 'tickpipe[pandas]'"
_AMOUNTS = ("price", "quantity", "sma", "open", "high", "low", "close", "volume", "quote_volume")


class ApiError(Exception):
    """The gateway answered with an error status; `status` and its `detail`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def _moment(value: Moment) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("give an aware datetime (tzinfo=UTC), not a naive one")
        return value.isoformat()
    return str(value)


class Client:
    """The gateway at `base_url` (`http://host:port`, or with a path prefix behind a proxy)."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"expected http(s)://host[:port], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    # -- HTTP -----------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - http(s) checked in __init__
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310
                body = answer.read()
                headers = {name.lower(): value for name, value in answer.headers.items()}
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail", exc.reason)
            except (ValueError, AttributeError):
                detail = exc.reason
            raise ApiError(exc.code, str(detail)) from None
        return json.loads(body, parse_float=Decimal), headers

    def history(
        self,
        symbol: str,
        start: Moment = None,
        end: Moment = None,
        exchange: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every stored trade of `symbol` in [start, end], newest first, following the cursor
        through every page. Fields as in /api/v1/history; amounts are Decimal."""
        return list(self.iter_history(symbol, start, end, exchange))

    def iter_history(
        self,
        symbol: str,
        start: Moment = None,
        end: Moment = None,
        exchange: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """`history`, one page in memory at a time."""
        path = f"/api/v1/history/{urllib.parse.quote(symbol, safe='')}"
        params: dict[str, Any] = {
            "limit": PAGE_LIMIT,
            "start": _moment(start),
            "end": _moment(end),
            "exchange": exchange,
        }
        while True:
            page, headers = self._get(path, params)
            yield from page
            cursor = headers.get("x-next-cursor")
            if not cursor or not page:
                return
            params["cursor"] = cursor

    def candles(
        self,
        symbol: str,
        interval: str = "1m",
        start: Moment = None,
        end: Moment = None,
        exchange: str | None = None,
    ) -> list[dict[str, Any]]:
        """OHLCV candles, oldest first. With `start`, every interval up to `end` (or now), in
        requests of at most 1,000 intervals; without, the newest 1,000 intervals up to `end`."""
        if interval not in INTERVAL_MS:
            raise ValueError(f"interval {interval!r}: one of {', '.join(INTERVAL_MS)}")
        path = f"/api/v1/candles/{urllib.parse.quote(symbol, safe='')}"
        params: dict[str, Any] = {"interval": interval, "exchange": exchange}
        if start is None:
            bars, _ = self._get(path, params | {"end": _moment(end), "limit": CANDLE_LIMIT})
            return list(bars)
        step_ms = INTERVAL_MS[interval]
        from_ms = _epoch_ms(_moment(start))
        to_ms = _epoch_ms(_moment(end)) if end is not None else time.time_ns() // 1_000_000
        chunk = CANDLE_LIMIT
        bars_all: list[dict[str, Any]] = []
        from_ms -= from_ms % step_ms
        while from_ms <= to_ms:
            chunk_end_ms = min(to_ms, from_ms + chunk * step_ms - 1)
            try:
                bars, _ = self._get(
                    path, params | {"start": from_ms, "end": chunk_end_ms, "limit": chunk}
                )
            except ApiError as exc:
                if exc.status == 422 and "at most" in exc.detail and chunk > 1:
                    chunk //= 2  # the gateway scans raw trades over a bounded span
                    continue
                raise
            bars_all += bars
            from_ms = chunk_end_ms + 1
        return bars_all

    # -- pandas ---------------------------------------------------------------------------

    def history_frame(
        self,
        symbol: str,
        start: Moment = None,
        end: Moment = None,
        exchange: str | None = None,
        *,
        decimals: Literal["decimal", "str"] = "decimal",
    ) -> pandas.DataFrame:
        """`history` as a DataFrame indexed by the UTC trade time, oldest first; amounts are
        Decimal objects (or strings with `decimals="str"`)."""
        return _frame(self.history(symbol, start, end, exchange)[::-1], decimals)

    def candles_frame(
        self,
        symbol: str,
        interval: str = "1m",
        start: Moment = None,
        end: Moment = None,
        exchange: str | None = None,
        *,
        decimals: Literal["decimal", "str"] = "decimal",
    ) -> pandas.DataFrame:
        """`candles` as a DataFrame indexed by the UTC start of each interval."""
        return _frame(self.candles(symbol, interval, start, end, exchange), decimals)

    # -- live -----------------------------------------------------------------------------

    async def stream(
        self,
        symbols: Iterable[str] | None = None,
        *,
        max_backoff_s: float = 10.0,
    ) -> AsyncIterator[dict[str, Any]]:
        """The /ws frames (`{"type": "trade", ...}`), forever. When the connection drops it
        reconnects by itself, with capped jittered backoff, logs a warning, and yields one
        `{"type": "reconnected", "attempts": n, "down_s": seconds}` before the next frames, so
        that the caller knows updates may have been missed in between."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        url = "ws" + self.base_url.removeprefix("http") + "/ws"
        if symbols is not None:
            url += "?" + urllib.parse.urlencode({"symbols": ",".join(symbols)})
        attempts, down_since = 0, None
        while True:
            try:
                async with connect(url, open_timeout=self.timeout_s) as ws:
                    if down_since is not None:
                        down_s = time.monotonic() - down_since
                        log.warning("tickpipe stream reconnected after %.1f s", down_s)
                        yield {"type": "reconnected", "attempts": attempts, "down_s": down_s}
                    attempts, down_since = 0, None
                    async for message in ws:
                        yield json.loads(message, parse_float=Decimal)
            except (OSError, TimeoutError, WebSocketException) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("tickpipe stream lost (%s); reconnecting", exc)
            else:
                if down_since is None:
                    down_since = time.monotonic()  # closed by the server: reconnect too
            attempts += 1
            delay_s = random.uniform(0, min(max_backoff_s, 0.1 * 2 ** min(attempts, 10)))
            await asyncio.sleep(delay_s)


def _epoch_ms(text: str | None) -> int:
    assert text is not None
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r}: give the time zone (Z for UTC)")
    return int(moment.timestamp() * 1000)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(PANDAS_MISSING) from None
    return pandas


def _frame(rows: list[dict[str, Any]], decimals: Literal["decimal", "str"]) -> pandas.DataFrame:
    pd = _pandas()
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
    if decimals == "str":
        for column in _AMOUNTS:
            if column in frame:
                frame[column] = [None if v is None else str(v) for v in frame[column]]
    frame.index = pd.to_datetime(frame.pop("time"), utc=True, format="ISO8601")
    frame.index.name = "time"
    return frame
