"""Security headers on every HTTP answer: `X-Content-Type-Options: nosniff` always (errors,
/metrics and WebSocket refusals included); the dashboard's Content-Security-Policy on its page
and files. The dashboard has no inline script or style and loads nothing from elsewhere, so its
policy allows only its own origin ('self' also covers same-origin ws:/wss: for the live feed)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DASHBOARD_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
DASHBOARD_PATHS = ("/", "/static/")  # "/" exactly; "/static/" and below
_RESPONSE_STARTS = ("http.response.start", "websocket.http.response.start")


class SecurityHeaders:
    """ASGI middleware adding the headers above to each response it passes on."""

    def __init__(self, app: ASGIApp, *, dashboard_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self._dashboard_paths = dashboard_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        with_csp = scope["type"] == "http" and self._is_dashboard(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] in _RESPONSE_STARTS:
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if with_csp:
                    headers["Content-Security-Policy"] = DASHBOARD_CSP
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _is_dashboard(self, path: str) -> bool:
        return any(
            path == prefix or (prefix.endswith("/") and prefix != "/" and path.startswith(prefix))
            for prefix in self._dashboard_paths
        )
