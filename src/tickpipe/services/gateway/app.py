"""The gateway's HTTP application: REST API, WebSocket stream, dashboard, probes, OpenAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import tickpipe
from tickpipe.core.symbols import InvalidSymbol, normalize_symbol, parse_symbol_list
from tickpipe.ports import TradeReader, UpdateFeed
from tickpipe.services.gateway.api import api_router
from tickpipe.services.gateway.live import CLIENT_QUEUE_FRAMES, Broadcaster
from tickpipe.telemetry.http_tracing import TracingMiddleware
from tickpipe.telemetry.probes import Check, probe_routes

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(files("tickpipe.services.gateway") / "static"))
MAX_WS_SYMBOLS = 100


def create_app(
    store: TradeReader,
    feed: UpdateFeed,
    checks: Mapping[str, Check],
    *,
    window: int,
    client_queue_frames: int = CLIENT_QUEUE_FRAMES,
) -> FastAPI:
    broadcaster = Broadcaster(feed, client_queue_frames=client_queue_frames)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broadcaster.start()
        yield
        await broadcaster.stop()

    app = FastAPI(
        title="tickpipe gateway",
        version=tickpipe.__version__,
        description="Trade history, snapshots and live updates of the tickpipe pipeline.",
        lifespan=lifespan,
    )
    app.add_middleware(TracingMiddleware)
    app.include_router(api_router(store, feed, window))
    app.router.routes.extend(probe_routes(checks))
    _install_error_handlers(app)

    @app.websocket("/ws")
    async def live_updates(
        websocket: WebSocket,
        symbols: Annotated[str | None, Query(max_length=2000)] = None,
    ) -> None:
        """One JSON text frame per processed trade; `?symbols=A,B` limits the stream."""
        try:
            wanted = _symbol_filter(symbols)
        except InvalidSymbol as exc:
            await websocket.accept()  # then close, so the client can read the reason
            await websocket.close(1008, str(exc)[:120])  # 1008: policy violation
            return
        await broadcaster.serve(websocket, wanted)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    return app


def _symbol_filter(raw: str | None) -> set[str] | None:
    if not raw:
        return None
    symbols = {normalize_symbol(s) for s in parse_symbol_list(raw)}
    if len(symbols) > MAX_WS_SYMBOLS:
        raise InvalidSymbol(f"at most {MAX_WS_SYMBOLS} symbols per connection")
    return symbols or None


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON `{"detail": ...}`: never HTML, never a stack trace."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "service unavailable: a dependency failed"}, 503)
