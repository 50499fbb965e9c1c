"""A server span per HTTP request of the gateway (ASGI middleware); a no-op while tracing is off.

Span names use the route template (`GET /api/v1/history/{symbol}`), never the raw path, so
there is one name per route however many symbols are asked for."""

from __future__ import annotations

from opentelemetry.trace import SpanKind
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tickpipe.telemetry import tracing


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        traceparent = dict(scope.get("headers") or []).get(b"traceparent")
        method = scope["method"]
        route = route_template(scope)
        with tracing.span(
            f"{method} {route}" if route else method,
            kind=SpanKind.SERVER,
            parent_traceparent=traceparent.decode("latin-1") if traceparent else None,
            **{"http.request.method": method, "url.path": scope["path"]},
        ) as span:

            async def send_with_status(message: Message) -> None:
                if span is not None and message["type"] == "http.response.start":
                    # FastAPI has put the route it chose into the scope by now.
                    chosen = getattr(scope.get("route"), "path_format", None) or route
                    if chosen:
                        span.update_name(f"{method} {chosen}")
                        span.set_attribute("http.route", chosen)
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_with_status)


def route_template(scope: Scope) -> str | None:
    """The path template of the app's plain route that matches the request (`/healthz`,
    `/static/{path}` for a mounted directory), or None when none does (FastAPI's own routes are
    read from the scope once routed; an unknown path keeps the bare method as its name)."""
    app = scope.get("app")
    partial = None
    for route in getattr(app, "routes", ()):
        if not isinstance(getattr(route, "path", None), str):
            continue  # a router FastAPI included: its routes name themselves in the scope
        match, _ = route.matches(scope)
        if match is Match.NONE:
            continue
        template = f"{route.path}/{{path}}" if isinstance(route, Mount) else route.path
        if match is Match.FULL:
            return str(template)
        partial = partial or str(template)  # the path matches, the method does not
    return partial
