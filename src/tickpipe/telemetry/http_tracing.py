"""A server span per HTTP request of the gateway (ASGI middleware); a no-op while tracing is off."""

from __future__ import annotations

from opentelemetry.trace import SpanKind
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
        with tracing.span(
            f"{scope['method']} {scope['path']}",
            kind=SpanKind.SERVER,
            parent_traceparent=traceparent.decode("latin-1") if traceparent else None,
            **{"http.request.method": scope["method"], "url.path": scope["path"]},
        ) as span:

            async def send_with_status(message: Message) -> None:
                if span is not None and message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_with_status)
