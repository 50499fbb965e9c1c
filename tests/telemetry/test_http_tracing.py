"""The gateway's server spans are named by route template, not by the raw path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tickpipe.adapters.pubsub.memory import MemoryPubSub
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.sqlite import SqliteStore, open_sqlite_store
from tickpipe.services.gateway.app import create_app
from tickpipe.telemetry import tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.setup_tracing("tickpipe-test", exporter)
    yield exporter
    tracing.shutdown_tracing()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path}/gateway.db"
    await migrate(url)
    opened = await open_sqlite_store(url)
    yield opened
    await opened.close()


async def test_span_names_use_the_route_template(
    spans: InMemorySpanExporter, store: SqliteStore
) -> None:
    """Three symbols' histories give one span name with `{symbol}`; the route is an attribute;
    an unknown path gives the bare method, so names stay bounded."""
    app = create_app(store, MemoryPubSub(5), {}, window=5)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
            assert (await http.get(f"/api/v1/history/{symbol}")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/static/style.css")).status_code == 200
        assert (await http.get("/no/such/path/123")).status_code == 404
    finished = spans.get_finished_spans()
    names = [span.name for span in finished]
    assert names == [
        "GET /api/v1/history/{symbol}",
        "GET /api/v1/history/{symbol}",
        "GET /api/v1/history/{symbol}",
        "GET /healthz",
        "GET /static/{path}",
        "GET",
    ]
    first = finished[0].attributes or {}
    assert first["http.route"] == "/api/v1/history/{symbol}"
    assert first["url.path"] == "/api/v1/history/BTCUSDT"
    assert first["http.response.status_code"] == 200
