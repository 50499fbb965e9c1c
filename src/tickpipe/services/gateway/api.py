"""REST routes of the gateway: history and snapshots (contract: HTTP API)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response

from tickpipe.core.symbols import InvalidSymbol, normalize_symbol
from tickpipe.core.views import history_view, snapshot_view
from tickpipe.ports import JsonObject, TradeReader, UpdateFeed
from tickpipe.services.gateway.schemas import (
    BtcSnapshot,
    ErrorBody,
    Exchange,
    HistoryTrade,
    Snapshot,
)

SymbolPath = Annotated[
    str, Path(min_length=1, max_length=40, description="Symbol, e.g. BTCUSDT (BTC-USD also works)")
]
ExchangeQuery = Annotated[Exchange | None, Query(description="Only this exchange")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}


def json_response(content: Any) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


def symbol_or_422(raw: str) -> str:
    try:
        return normalize_symbol(raw)
    except InvalidSymbol as exc:
        raise HTTPException(422, str(exc)) from None


def api_router(store: TradeReader, feed: UpdateFeed, window: int) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["market data"])

    async def latest_snapshot(symbol: str, exchange: str | None) -> JsonObject | None:
        """From the live feed; from the store when the feed has none (e.g. after a restart)."""
        snapshot = await feed.snapshot(symbol, exchange)
        if snapshot is None:
            stored = await store.latest(symbol, exchange)
            snapshot = None if stored is None else snapshot_view(stored, window)
        return snapshot

    @router.get("/history/{symbol}", response_model=list[HistoryTrade])
    async def history(
        symbol: SymbolPath,
        limit: Annotated[int, Query(ge=1, le=1000, description="How many trades")] = 100,
        exchange: ExchangeQuery = None,
    ) -> Response:
        """The last `limit` stored trades of the symbol, newest first; `[]` if unknown."""
        rows = await store.history(
            symbol_or_422(symbol), limit=limit, exchange=exchange and exchange.value
        )
        return json_response([history_view(row) for row in rows])

    @router.get("/snapshot/{symbol}", response_model=Snapshot, responses=NOT_FOUND)
    async def snapshot(symbol: SymbolPath, exchange: ExchangeQuery = None) -> Response:
        """The latest processed trade of the symbol with its SMA and signal."""
        normalized = symbol_or_422(symbol)
        found = await latest_snapshot(normalized, exchange and exchange.value)
        if found is None:
            raise HTTPException(404, f"no trades seen for {normalized}")
        return json_response(found)

    @router.get("/btc", response_model=BtcSnapshot, responses=NOT_FOUND)
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

    @router.get("/symbols", response_model=list[Snapshot])
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
