"""The gateway's HTTP application: REST API, WebSocket stream, dashboard, probes, OpenAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import tickpipe
from tickpipe.core.symbols import InvalidSymbol, normalize_symbol, parse_symbol_list
from tickpipe.ports import QueryTimeout, TradeReader, UpdateFeed
from tickpipe.services.gateway.admission import (
    ConnectionLimiter,
    IpNetwork,
    Refusal,
    client_address,
)
from tickpipe.services.gateway.api import DEFAULT_CANDLES_MAX_SCAN_US, api_router
from tickpipe.services.gateway.headers import DASHBOARD_PATHS, SecurityHeaders
from tickpipe.services.gateway.live import CLIENT_QUEUE_FRAMES, Broadcaster
from tickpipe.services.gateway.operations import operations_router
from tickpipe.services.gateway.schemas import ws_frame_schema
from tickpipe.telemetry import metrics
from tickpipe.telemetry.http_tracing import TracingMiddleware
from tickpipe.telemetry.probes import Check

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(files("tickpipe.services.gateway") / "static"))
MAX_WS_SYMBOLS = 100
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
WS_RETRY_AFTER_S = 5
TRY_AGAIN_LATER = 1013  # WebSocket close code: the server is overloaded
WS_FRAME_SCHEMA_PATH = "/schemas/ws-frame.json"
# Links are relative, so they also work behind a proxy that serves the gateway under a prefix.
DESCRIPTION = f"""Trade history, snapshots and live updates of the tickpipe pipeline.

Every 4xx and 5xx answer is JSON `{{"detail": "<one sentence>"}}`.

**Live updates:** `WS /ws` sends one JSON text frame per processed trade; `?symbols=A,B` limits
the stream. The frame and the protocol are described by the JSON Schema at
[{WS_FRAME_SCHEMA_PATH}](.{WS_FRAME_SCHEMA_PATH})."""
TAGS = [
    {"name": "market data", "description": "Trades, snapshots, candles and signals"},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics"},
    {"name": "documentation", "description": "Machine-readable documents"},
]


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """What an operator tunes when exposing the gateway (README "Security")."""

    ws_max_clients: int = 1000
    ws_max_clients_per_ip: int = 50
    trusted_proxies: Sequence[IpNetwork] = ()
    cors_origins: Sequence[str] = ()  # ("*",) for any origin; () for no CORS headers
    public_url: str | None = None  # base of absolute paging links; None: relative links
    serve_metrics: bool = True  # False when /metrics has a port of its own
    candles_max_scan_us: int = DEFAULT_CANDLES_MAX_SCAN_US


def create_app(
    store: TradeReader,
    feed: UpdateFeed,
    checks: Mapping[str, Check],
    *,
    window: int,
    client_queue_frames: int = CLIENT_QUEUE_FRAMES,
    options: GatewayOptions = GatewayOptions(),
) -> FastAPI:
    broadcaster = Broadcaster(feed, client_queue_frames=client_queue_frames)
    limiter = ConnectionLimiter(options.ws_max_clients, options.ws_max_clients_per_ip)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broadcaster.start()
        yield
        await broadcaster.stop()

    app = FastAPI(
        title="tickpipe gateway",
        version=tickpipe.__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.add_middleware(TracingMiddleware)
    if options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET"],
            expose_headers=["X-Next-Cursor", "Link"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders, dashboard_paths=DASHBOARD_PATHS)
    app.include_router(
        api_router(
            store,
            feed,
            window,
            public_url=options.public_url,
            candles_max_scan_us=options.candles_max_scan_us,
        )
    )
    app.include_router(operations_router(checks, metrics=options.serve_metrics))
    _install_error_handlers(app)
    _document(app, window)

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
        peer = websocket.client.host if websocket.client else None
        forwarded = websocket.headers.getlist("x-forwarded-for")
        address = client_address(peer, forwarded, options.trusted_proxies)
        refusal = limiter.admit(address)
        if refusal is not None:
            metrics.websocket_refused.labels(refusal.value).inc()
            await _refuse(websocket, refusal, limiter)
            return
        try:
            await broadcaster.serve(websocket, wanted)
        finally:
            limiter.release(address)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    return app


async def _refuse(websocket: WebSocket, refusal: Refusal, limiter: ConnectionLimiter) -> None:
    """HTTP 503 with a JSON reason instead of the handshake, where the server can send one;
    else the handshake is accepted and the socket closed at once with 1013 and the reason."""
    if refusal is Refusal.SERVER_FULL:
        reason = f"server full: {limiter.max_total} WebSocket clients connected"
    else:
        reason = f"too many WebSockets from one address (at most {limiter.max_per_address})"
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        denial = JSONResponse(
            {"detail": reason}, 503, headers={"Retry-After": str(WS_RETRY_AFTER_S)}
        )
        await websocket.send_denial_response(denial)
        return
    await websocket.accept()
    await websocket.close(TRY_AGAIN_LATER, reason)


def _symbol_filter(raw: str | None) -> set[str] | None:
    if not raw:
        return None
    symbols = {normalize_symbol(s) for s in parse_symbol_list(raw)}
    if len(symbols) > MAX_WS_SYMBOLS:
        raise InvalidSymbol(f"at most {MAX_WS_SYMBOLS} symbols per connection")
    return symbols or None


def _document(app: FastAPI, window: int) -> None:
    """Serves the WebSocket frame schema; states this deployment's SMA window in the OpenAPI."""
    frame_schema = ws_frame_schema()

    @app.get(
        WS_FRAME_SCHEMA_PATH,
        tags=["documentation"],
        responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
        response_class=JSONResponse,
    )
    async def ws_frame_document() -> JSONResponse:
        """JSON Schema of a `WS /ws` frame; its description explains the protocol."""
        return JSONResponse(frame_schema)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            btc_sma = document["components"]["schemas"]["BtcSnapshot"]["properties"]["sma_20"]
            btc_sma["description"] += f" Here: {window} trades."
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON `{"detail": ...}`: never HTML, never a stack trace."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(QueryTimeout)
    async def query_timeout(request: Request, exc: QueryTimeout) -> JSONResponse:
        metrics.queries_timed_out.inc()
        detail = f"{exc}: try a shorter time range or a smaller limit"
        return JSONResponse({"detail": detail}, 503, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(exc)}, 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # Sent from outside the middleware stack: add the header SecurityHeaders would.
        return JSONResponse(
            {"detail": "service unavailable: a dependency failed"}, 503, headers=NOSNIFF
        )


def validation_detail(exc: RequestValidationError) -> str:
    """FastAPI's list of errors as one sentence, the shape of every other error's detail:
    `limit: Input should be less than or equal to 1000` (never the input itself)."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"][1:]) or str(error["loc"][0])
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts) or "invalid request"
