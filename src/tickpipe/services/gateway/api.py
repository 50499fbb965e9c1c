"""REST routes of the gateway: history, snapshots (contract: HTTP API), candles and signal
changes. Time parameters are RFC 3339, dates or epoch milliseconds, both bounds inclusive.
Every constraint of a single parameter is declared (and so enforced by FastAPI before a handler
runs); constraints between start and end answer 422 with a detail starting RANGE_ERROR."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import WithJsonSchema

from tickpipe.core.candles import CandleInterval, CandleWindow, candle_window
from tickpipe.core.symbols import InvalidSymbol, normalize_symbol
from tickpipe.core.views import candle_view, history_view, signal_change_view, snapshot_view
from tickpipe.ports import (
    END_OF_HISTORY,
    HistoryKey,
    JsonObject,
    RangeTooWide,
    TradeReader,
    UpdateFeed,
)
from tickpipe.services.gateway.params import decode_cursor, encode_cursor, parse_time_us
from tickpipe.services.gateway.schemas import (
    CURSOR_PATTERN,
    SYMBOL_MAX_LENGTH,
    SYMBOL_PATTERN,
    TIME_MAX_LENGTH,
    BtcSnapshot,
    CandleBar,
    Error,
    Exchange,
    HistoryTrade,
    SignalChangeItem,
    Snapshot,
    time_parameter_schema,
)

SymbolPath = Annotated[
    str,
    Path(
        pattern=SYMBOL_PATTERN,
        max_length=SYMBOL_MAX_LENGTH,
        description="Symbol: 2-32 letters/digits once `-` and `_` are removed and letters"
        " upper-cased (BTCUSDT; btc-usdt works too)",
        examples=["BTCUSDT", "BTC-USD"],
    ),
]
ExchangeQuery = Annotated[Exchange | None, Query(description="Only this exchange")]
TIME_FORMS_DOC = (
    ": RFC 3339 date-time (`2024-05-01T12:00:00Z`), date (`2024-05-01`, UTC midnight) or epoch"
    " milliseconds; times before 1970 or after 2100 count as those bounds"
)
StartQuery = Annotated[
    str | None,
    Query(max_length=TIME_MAX_LENGTH, description="From this time (inclusive)" + TIME_FORMS_DOC),
    WithJsonSchema(time_parameter_schema(["2024-05-01T00:00:00Z", "2024-05-01", "1714521600000"])),
]
EndQuery = Annotated[
    str | None,
    Query(max_length=TIME_MAX_LENGTH, description="Up to this time (inclusive)" + TIME_FORMS_DOC),
    WithJsonSchema(time_parameter_schema(["2024-05-01T12:00:00Z", "2024-05-02", "1714608000000"])),
]
# Constraints between parameters, which OpenAPI cannot declare, answer 422 with this prefix.
RANGE_ERROR = "start and end: "
Responses = dict[int | str, dict[str, Any]]
UNAVAILABLE: Responses = {
    503: {
        "model": Error,
        "description": "The store failed or did not answer in time",
        "headers": {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        },
    },
}
ERRORS: Responses = {
    422: {
        "model": Error,
        "description": "A parameter breaks its declared constraint; or, with a detail that"
        f" starts `{RANGE_ERROR.strip()}`, start and end do not fit together as the operation"
        " says",
    },
    **UNAVAILABLE,
}
NOT_FOUND: Responses = {404: {"model": Error, "description": "Nothing seen yet"}}
PAGED: Responses = {
    200: {
        "headers": {
            "X-Next-Cursor": {
                "description": "Pass it back as `cursor` (same other parameters) for the next,"
                " older page; absent on the last page",
                "schema": {"type": "string", "pattern": CURSOR_PATTERN},
            },
            "Link": {
                "description": 'The next page\'s URL, rel="next"',
                "schema": {"type": "string"},
            },
        }
    }
}
DEFAULT_SIGNAL_RANGE_US = 86_400_000_000  # one day
MAX_SIGNAL_RANGE_US = 7 * DEFAULT_SIGNAL_RANGE_US  # a range is scanned whole: keep it bounded
DEFAULT_CANDLES_MAX_SCAN_US = 7 * DEFAULT_SIGNAL_RANGE_US  # of raw trades, per request


def json_response(content: Any) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


def symbol_or_422(raw: str) -> str:
    try:
        return normalize_symbol(raw)
    except InvalidSymbol as exc:
        raise HTTPException(422, str(exc)) from None


def time_range_or_422(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    try:
        start_us = None if start is None else parse_time_us(start, "start")
        end_us = None if end is None else parse_time_us(end, "end")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if start_us is not None and end_us is not None and start_us > end_us:
        raise HTTPException(422, f"{RANGE_ERROR}start {start!r} is after end {end!r}")
    return start_us, end_us


def next_page_url(request: Request, cursor: str, public_url: str | None) -> str:
    """The request's own path and query with `cursor` set: relative, or under `public_url`;
    never built from the request's Host header."""
    url = request.url.include_query_params(cursor=cursor)
    relative = f"{url.path}?{url.query}"
    return relative if public_url is None else public_url.rstrip("/") + relative


def clamp_to_span(
    window: CandleWindow, interval_us: int, max_span_us: int, *, keep_start: bool
) -> CandleWindow:
    """The window cut to whole intervals spanning at most `max_span_us`, at its start or end."""
    span_us = max(max_span_us // interval_us, 1) * interval_us
    if keep_start:
        return CandleWindow(window.from_us, min(window.to_us, window.from_us + span_us))
    return CandleWindow(max(window.from_us, window.to_us - span_us), window.to_us)


def api_router(
    store: TradeReader,
    feed: UpdateFeed,
    window: int,
    *,
    public_url: str | None = None,
    candles_max_scan_us: int = DEFAULT_CANDLES_MAX_SCAN_US,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["market data"])

    async def latest_snapshot(symbol: str, exchange: str | None) -> JsonObject | None:
        """From the live feed; from the store when the feed has none (e.g. after a restart)."""
        snapshot = await feed.snapshot(symbol, exchange)
        if snapshot is None:
            stored = await store.latest(symbol, exchange)
            snapshot = None if stored is None else snapshot_view(stored, window)
        return snapshot

    async def newest_time_us(symbol: str, exchange: str | None) -> int | None:
        newest = await store.latest(symbol, exchange)
        return None if newest is None else newest.trade.exchange_time_us

    @router.get("/history/{symbol}", response_model=list[HistoryTrade], responses=PAGED | ERRORS)
    async def history(
        request: Request,
        symbol: SymbolPath,
        limit: Annotated[int, Query(ge=1, le=1000, description="How many trades")] = 100,
        exchange: ExchangeQuery = None,
        start: StartQuery = None,
        end: EndQuery = None,
        cursor: Annotated[
            str | None,
            Query(
                pattern=CURSOR_PATTERN,
                max_length=40,
                description="X-Next-Cursor of the previous page (`<time_us>_<row_id>`: a place"
                " in history order; a page starts just before it)",
            ),
        ] = None,
    ) -> Response:
        """The last `limit` stored trades of the symbol (in [start, end] when given), newest
        first; `[]` if unknown. More pages: follow X-Next-Cursor / Link (keyset, no OFFSET)."""
        normalized = symbol_or_422(symbol)
        start_us, end_us = time_range_or_422(start, end)
        before = END_OF_HISTORY if end_us is None else HistoryKey(end_us, END_OF_HISTORY.row_id)
        if cursor is not None:
            try:
                before = min(before, decode_cursor(cursor))
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
        page = await store.history_page(
            normalized,
            limit=limit,
            before=before,
            start_us=start_us or 0,
            exchange=exchange and exchange.value,
        )
        response = json_response([history_view(row) for row in page.trades])
        if page.next_key is not None:
            next_cursor = encode_cursor(page.next_key)
            next_url = next_page_url(request, next_cursor, public_url)
            response.headers["X-Next-Cursor"] = next_cursor
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return response

    @router.get("/candles/{symbol}", response_model=list[CandleBar], responses=ERRORS)
    async def candles(
        symbol: SymbolPath,
        interval: Annotated[CandleInterval, Query(description="Length of a candle")] = (
            CandleInterval.M1
        ),
        start: StartQuery = None,
        end: EndQuery = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many intervals")] = (
            500
        ),
        exchange: ExchangeQuery = None,
    ) -> Response:
        """OHLCV candles, oldest first, covering at most `limit` whole intervals: from the one
        holding `start`, else the ones up to the interval holding `end` (default: the newest
        trade). Intervals without trades are left out; exchanges are merged unless one is named.
        Where candles come from raw trades (SQLite; PostgreSQL without TimescaleDB, or 1s), a
        request spans at most TICKPIPE_CANDLES_MAX_SCAN_DAYS: fewer intervals when only one
        bound is given, 422 when both are."""
        normalized = symbol_or_422(symbol)
        start_us, end_us = time_range_or_422(start, end)
        exchange_name = exchange and exchange.value
        if start_us is None and end_us is None:
            end_us = await newest_time_us(normalized, exchange_name)
            if end_us is None:
                return json_response([])
        window = candle_window(interval.length_us, limit, start_us=start_us, end_us=end_us)
        for attempt in range(2):
            try:
                rows = await store.candles(
                    normalized,
                    interval_us=interval.length_us,
                    from_us=window.from_us,
                    to_us=window.to_us,
                    exchange=exchange_name,
                    max_scan_span_us=candles_max_scan_us,
                )
                break
            except RangeTooWide as exc:
                if attempt or (start is not None and end is not None):
                    detail = f"{RANGE_ERROR}{exc}: give them closer together"
                    raise HTTPException(422, detail) from None
                window = clamp_to_span(
                    window, interval.length_us, exc.max_span_us, keep_start=start is not None
                )
        return json_response([candle_view(candle) for candle in rows])

    @router.get("/signals/{symbol}", response_model=list[SignalChangeItem], responses=ERRORS)
    async def signals(
        symbol: SymbolPath,
        start: StartQuery = None,
        end: EndQuery = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="How many changes")] = 100,
        exchange: ExchangeQuery = None,
    ) -> Response:
        """Signal changes (BUY->SELL, SELL->BUY; HOLDs in between do not count) per
        (exchange, symbol) stream, newest first, in [start, end]: by default the day up to the
        newest trade; at most 7 days."""
        normalized = symbol_or_422(symbol)
        start_us, end_us = time_range_or_422(start, end)
        exchange_name = exchange and exchange.value
        if end_us is None:
            if start_us is not None:
                end_us = start_us + DEFAULT_SIGNAL_RANGE_US
            else:
                end_us = await newest_time_us(normalized, exchange_name)
                if end_us is None:
                    return json_response([])
        if start_us is None:
            start_us = max(end_us - DEFAULT_SIGNAL_RANGE_US, 0)
        if end_us - start_us > MAX_SIGNAL_RANGE_US:
            raise HTTPException(422, f"{RANGE_ERROR}the range is longer than 7 days")
        changes = await store.signal_changes(
            normalized, start_us=start_us, end_us=end_us, limit=limit, exchange=exchange_name
        )
        return json_response([signal_change_view(change) for change in changes])

    @router.get("/snapshot/{symbol}", response_model=Snapshot, responses=NOT_FOUND | ERRORS)
    async def snapshot(symbol: SymbolPath, exchange: ExchangeQuery = None) -> Response:
        """The latest processed trade of the symbol with its SMA and signal."""
        normalized = symbol_or_422(symbol)
        found = await latest_snapshot(normalized, exchange and exchange.value)
        if found is None:
            raise HTTPException(404, f"no trades seen for {normalized}")
        return json_response(found)

    @router.get("/btc", response_model=BtcSnapshot, responses=NOT_FOUND | UNAVAILABLE)
    async def btc() -> Response:
        """Seed-compatible latest BTCUSDT price, SMA and recommendation."""
        found = await latest_snapshot("BTCUSDT", None)
        if found is None:
            raise HTTPException(404, "no BTCUSDT trades seen yet")
        return json_response(
            {
                "symbol": "BTCUSDT",
                "price": found["price"],
                "sma_20": found["sma"],
                "recommendation": found["signal"],
            }
        )

    @router.get("/symbols", response_model=list[Snapshot], responses=UNAVAILABLE)
    async def symbols() -> Response:
        """Every (exchange, symbol) seen, with its latest price, SMA and signal."""
        views = {
            (s.trade.exchange, s.trade.symbol): snapshot_view(s, window)
            for s in await store.symbols()
        }
        for live in await feed.snapshots():  # fresher than the store
            views[(live["exchange"], live["symbol"])] = live
        return json_response(sorted(views.values(), key=lambda v: (v["symbol"], v["exchange"])))

    return router
