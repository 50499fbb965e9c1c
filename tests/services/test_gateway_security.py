"""The gateway as exposed to browsers: security headers, CORS, paging links under a hostile
Host, a /readyz that leaks nothing, WebSocket limits on a real uvicorn server, and expensive reads
that answer 503/422 instead of hanging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from fixtures.procs import free_port
from tickpipe.adapters.pubsub.memory import MemoryPubSub
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.sqlite import SqliteStore, open_sqlite_store
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal
from tickpipe.core.trade import Side, new_trade
from tickpipe.services.gateway.admission import parse_trusted_proxies
from tickpipe.services.gateway.app import GatewayOptions, create_app
from tickpipe.services.gateway.headers import DASHBOARD_CSP
from tickpipe.services.runtime import http_server
from tickpipe.telemetry.probes import Check, DependencyFailing

WINDOW = 5
T0_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
SECRET_REASON = "connection to postgres://tickpipe:hunter2@10.9.8.7:5432 refused"


def scored(n: int, time_us: int, price: str = "100") -> ScoredTrade:
    trade = new_trade(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=str(n),
        price=price,
        quantity="1",
        side=Side.BUY,
        exchange_time_us=time_us,
        ingest_time_us=time_us,
    )
    return ScoredTrade(trade, None, Signal.HOLD)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path}/gateway.db"
    await migrate(url)
    opened = await open_sqlite_store(url)
    yield opened
    await opened.close()


@contextlib.asynccontextmanager
async def gateway(
    store: Any, checks: dict[str, Check] | None = None, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        store, MemoryPubSub(WINDOW), checks or {}, window=WINDOW, options=GatewayOptions(**options)
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


async def test_every_answer_says_nosniff_and_the_dashboard_has_a_strict_csp(
    store: SqliteStore,
) -> None:
    """nosniff on JSON, 404, 422, /metrics and static files; the CSP (no remote source, no
    inline code) on the dashboard page and its files only."""
    async with gateway(store) as http:
        answers = {
            "json": await http.get("/api/v1/symbols"),
            "404": await http.get("/api/v1/snapshot/NOPE"),
            "422": await http.get("/api/v1/history/BTCUSDT?limit=0"),
            "unknown path": await http.get("/no/such/path"),
            "metrics": await http.get("/metrics"),
            "healthz": await http.get("/healthz"),
            "dashboard": await http.get("/"),
            "script": await http.get("/static/app.js"),
        }
    assert answers["404"].status_code == 404
    assert answers["422"].status_code == 422
    for name, answer in answers.items():
        assert answer.headers.get("x-content-type-options") == "nosniff", name
    for name in ("dashboard", "script"):
        assert answers[name].headers["content-security-policy"] == DASHBOARD_CSP
    assert "content-security-policy" not in answers["json"].headers
    assert "http:" not in DASHBOARD_CSP
    assert "*" not in DASHBOARD_CSP
    assert "unsafe-inline" not in DASHBOARD_CSP
    assert "data:" not in DASHBOARD_CSP


def test_dashboard_files_have_no_inline_code_or_remote_source() -> None:
    """What the CSP would block is not in the files: no inline <script>/<style>, no style=,
    no on*= handlers, no data: or remote URLs."""
    from tickpipe.services.gateway.app import STATIC_DIR

    html = (STATIC_DIR / "index.html").read_text()
    assert "<style" not in html
    assert "<script" in html
    for tag in html.split("<script")[1:]:
        assert " src=" in tag.split(">")[0], "every script is a file"
    css_and_js = "".join(p.read_text() for p in STATIC_DIR.glob("*.[cj]s*"))
    for text in (html, css_and_js):
        assert " style=" not in text
        assert "data:" not in text
        assert "http://" not in text.replace("http://www.w3.org", "")
        assert "https://" not in text
    assert " onclick=" not in html
    assert " onload=" not in html


async def test_cors_is_off_by_default_and_follows_the_configured_origins(
    store: SqliteStore,
) -> None:
    """No Access-Control-* headers unless configured; a listed origin is allowed, another not;
    `*` allows any."""
    origin = {"Origin": "https://app.example.com"}
    async with gateway(store) as http:
        plain = await http.get("/api/v1/symbols", headers=origin)
    assert not [h for h in plain.headers if h.startswith("access-control-")]
    async with gateway(store, cors_origins=["https://app.example.com"]) as http:
        listed = await http.get("/api/v1/symbols", headers=origin)
        other = await http.get("/api/v1/symbols", headers={"Origin": "https://evil.example"})
        preflight = await http.options(
            "/api/v1/symbols",
            headers={**origin, "Access-Control-Request-Method": "GET"},
        )
    assert listed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "link" in listed.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 200
    assert preflight.headers["x-content-type-options"] == "nosniff"
    async with gateway(store, cors_origins=["*"]) as http:
        anyone = await http.get("/api/v1/symbols", headers={"Origin": "https://evil.example"})
    assert anyone.headers["access-control-allow-origin"] == "*"


async def test_paging_links_never_echo_a_hostile_host(store: SqliteStore) -> None:
    """Link is relative by default, or under TICKPIPE_PUBLIC_URL; the Host header never shows."""
    await store.write([scored(n, T0_US + n) for n in range(5)])
    hostile = {"Host": "evil.example:666", "X-Forwarded-Host": "evil.example"}
    async with gateway(store) as http:
        first = await http.get("/api/v1/history/BTCUSDT?limit=2", headers=hostile)
        link = first.headers["Link"]
        assert "evil" not in link
        assert link.startswith("</api/v1/history/BTCUSDT?")
        next_url = link[1 : link.index(">")]
        second = await http.get(next_url, headers=hostile)
    assert [t["trade_id"] for t in first.json()] == ["4", "3"]
    assert [t["trade_id"] for t in second.json()] == ["2", "1"]
    async with gateway(store, public_url="https://markets.example.com/tickpipe/") as http:
        linked = await http.get("/api/v1/history/BTCUSDT?limit=2", headers=hostile)
    assert linked.headers["Link"].startswith(
        "<https://markets.example.com/tickpipe/api/v1/history/BTCUSDT?limit=2&cursor="
    )


async def test_readyz_names_the_dependency_but_never_the_exception_text(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """503 names database/kafka/redis; hosts, users, passwords stay in the (rate-limited) log."""

    async def database_down() -> None:
        raise OSError(SECRET_REASON)

    async def processor_failing() -> None:
        raise DependencyFailing({"kafka": f"commit failing: {SECRET_REASON}"})

    async def redis_hangs() -> None:
        await asyncio.sleep(60)

    checks = {"database": database_down, "processor": processor_failing, "redis": redis_hangs}
    caplog.set_level(logging.WARNING, "tickpipe.telemetry.probes")
    async with gateway(store, checks) as http:
        first = await http.get("/readyz")
        second = await http.get("/readyz")
    assert first.status_code == 503
    body = first.json()
    assert body["failing"] == {
        "database": "unavailable",
        "kafka": "unavailable",
        "redis": "no answer within 2s",
    }
    for secret in ("hunter2", "10.9.8.7", "5432", "tickpipe:", "postgres://", "refused"):
        assert secret not in first.text
    assert second.json() == body
    logged = [r.getMessage() for r in caplog.records]
    assert sum("hunter2" in line for line in logged) == 2, logged  # database + kafka, once each


async def test_metrics_can_leave_the_public_app(store: SqliteStore) -> None:
    """With a metrics port, the public app has no /metrics (it is served on that port)."""
    async with gateway(store, serve_metrics=False) as http:
        assert (await http.get("/metrics")).status_code == 404
        assert (await http.get("/healthz")).status_code == 200


# --- WebSocket limits, over a real uvicorn server ------------------------------------------


@contextlib.asynccontextmanager
async def served(store: Any, **options: Any) -> AsyncIterator[str]:
    app = create_app(
        store, MemoryPubSub(WINDOW), {}, window=WINDOW, options=GatewayOptions(**options)
    )
    port = free_port()
    server = http_server(app, "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await task


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("tickpipe_websocket_refused_total", {"reason": reason}) or 0.0


async def refusal_status(url: str, **headers: str) -> int:
    with pytest.raises(InvalidStatus) as refused_with:
        async with connect(url, additional_headers=headers, open_timeout=5):
            pass
    return refused_with.value.response.status_code


async def eventually(condition: Callable[[], Any], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.1)


async def test_websockets_per_address_are_capped_and_freed_slots_reused(
    store: SqliteStore,
) -> None:
    """The 4th socket from one address gets 503 before the handshake; a closed socket and an
    abruptly dropped one (no close frame) both free their slot."""
    async with served(store, ws_max_clients=100, ws_max_clients_per_ip=3) as url:
        before = refused("address_full")
        sockets: list[ClientConnection] = [await connect(url, open_timeout=5) for _ in range(3)]
        assert await refusal_status(url) == 503
        assert refused("address_full") == before + 1

        await sockets.pop().close()
        sockets.append(await connect(url, open_timeout=5))  # the slot is free again

        sockets.pop().transport.abort()  # vanishes without a close frame

        async def reconnects() -> bool:
            try:
                sockets.append(await connect(url, open_timeout=5))
            except InvalidStatus:
                return False
            return True

        await eventually(reconnects)
        assert len(sockets) == 3
        for socket in sockets:
            await socket.close()


async def test_total_websockets_are_capped(store: SqliteStore) -> None:
    """Past TICKPIPE_WS_MAX_CLIENTS every new socket is refused, whatever its address."""
    async with served(
        store,
        ws_max_clients=2,
        ws_max_clients_per_ip=50,
        trusted_proxies=parse_trusted_proxies("127.0.0.1"),
    ) as url:
        before = refused("server_full")
        a = await connect(url, additional_headers={"X-Forwarded-For": "198.51.100.1"})
        b = await connect(url, additional_headers={"X-Forwarded-For": "198.51.100.2"})
        assert await refusal_status(url, **{"X-Forwarded-For": "198.51.100.3"}) == 503
        assert refused("server_full") == before + 1
        await a.close()
        await b.close()


async def test_forwarded_addresses_count_only_behind_a_trusted_proxy(
    store: SqliteStore,
) -> None:
    """Behind a trusted proxy each forwarded client has its own quota; from an untrusted peer
    a forged X-Forwarded-For does not escape the peer's quota."""
    async with served(
        store, ws_max_clients_per_ip=1, trusted_proxies=parse_trusted_proxies("127.0.0.1")
    ) as url:
        a = await connect(url, additional_headers={"X-Forwarded-For": "198.51.100.1"})
        b = await connect(url, additional_headers={"X-Forwarded-For": "198.51.100.2"})
        assert await refusal_status(url, **{"X-Forwarded-For": "198.51.100.1"}) == 503
        for socket in (a, b):
            await socket.close()
    async with served(store, ws_max_clients_per_ip=1) as url:
        a = await connect(url, additional_headers={"X-Forwarded-For": "198.51.100.1"})
        assert await refusal_status(url, **{"X-Forwarded-For": "198.51.100.2"}) == 503
        await a.close()


async def test_refused_websocket_without_denial_support_gets_1013_and_a_reason(
    store: SqliteStore,
) -> None:
    """A server without the denial-response extension: the socket is accepted, then closed
    with 1013 and a reason the client can read."""
    app = create_app(
        store,
        MemoryPubSub(WINDOW),
        {},
        window=WINDOW,
        options=GatewayOptions(ws_max_clients=1, ws_max_clients_per_ip=1),
    )
    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [],
        "client": ("198.51.100.1", 1234),
        "server": ("gateway", 80),
        "scheme": "ws",
        "subprotocols": [],
        "extensions": {},  # no "websocket.http.response"
    }
    holder_inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    holder_sent: list[dict[str, Any]] = []
    await holder_inbox.put({"type": "websocket.connect"})

    async def holder_send(message: dict[str, Any]) -> None:
        holder_sent.append(message)

    holder = asyncio.create_task(app(dict(scope), holder_inbox.get, holder_send))
    await eventually(lambda: _true_when(holder_sent))
    assert holder_sent[0]["type"] == "websocket.accept"

    refused_sent: list[dict[str, Any]] = []

    async def connect_only() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def refused_send(message: dict[str, Any]) -> None:
        refused_sent.append(message)

    await asyncio.wait_for(app(dict(scope), connect_only, refused_send), 5)
    assert [m["type"] for m in refused_sent] == ["websocket.accept", "websocket.close"]
    assert refused_sent[1]["code"] == 1013
    assert "server full" in refused_sent[1]["reason"]
    await holder_inbox.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(holder, 5)


async def _true_when(items: list[Any]) -> bool:
    return bool(items)


# --- expensive reads ------------------------------------------------------------------------


async def test_too_wide_raw_candle_range_is_422_and_one_sided_ranges_are_cut(
    store: SqliteStore,
) -> None:
    """SQLite scans raw trades: start+end wider than the bound is 422; start or end alone gets
    fewer intervals instead."""
    day_us = 86_400_000_000
    await store.write([scored(n, T0_US + n * day_us) for n in range(10)])
    async with gateway(store, candles_max_scan_us=3 * day_us) as http:
        wide = await http.get("/api/v1/candles/BTCUSDT?interval=1d&start=2024-01-01&end=2024-01-09")
        recent = await http.get("/api/v1/candles/BTCUSDT?interval=1d")
        early = await http.get("/api/v1/candles/BTCUSDT?interval=1d&start=2024-01-01")
        narrow = await http.get(
            "/api/v1/candles/BTCUSDT?interval=1d&start=2024-01-02&end=2024-01-03"
        )
    assert wide.status_code == 422
    assert "72 hours" in wide.json()["detail"]
    assert [c["open"] for c in recent.json()] == [100.0] * 3
    assert [c["time"][:10] for c in recent.json()] == ["2024-01-08", "2024-01-09", "2024-01-10"]
    assert [c["time"][:10] for c in early.json()] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert narrow.status_code == 200
    assert len(narrow.json()) == 2
