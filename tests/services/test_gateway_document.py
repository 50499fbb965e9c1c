"""The gateway's OpenAPI document tells the truth: real answers (200, 404, 422, 503) validate
against it, every error status is declared with the one error shape, every constraint and enum is
declared, and the time and cursor parameters accept exactly what the document says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tickpipe.adapters.pubsub.memory import MemoryPubSub
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.sqlite import SqliteStore, open_sqlite_store
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal
from tickpipe.core.trade import MAX_TIME_US, Side, datetime_to_time_us, new_trade
from tickpipe.ports import END_OF_HISTORY, HistoryKey, QueryTimeout
from tickpipe.services.gateway.api import RANGE_ERROR
from tickpipe.services.gateway.app import WS_FRAME_SCHEMA_PATH, create_app
from tickpipe.services.gateway.params import decode_cursor, encode_cursor, parse_time_us
from tickpipe.services.gateway.schemas import CURSOR_PATTERN, SYMBOL_PATTERN, ws_frame_schema

WINDOW = 7
T0_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
SIGNALS = [Signal.HOLD, Signal.BUY, Signal.SELL, Signal.HOLD, Signal.BUY, Signal.SELL]
SIDES = [Side.BUY, Side.SELL, None]
ERROR_REF = "#/components/schemas/Error"


def scored(n: int, exchange: str = "binance") -> ScoredTrade:
    trade = new_trade(
        exchange=exchange,
        symbol="BTCUSDT",
        trade_id=str(n),
        price=str(100 + n % 5),
        quantity="0.5",
        side=SIDES[n % 3],
        exchange_time_us=T0_US + n * 1_000_000,
        ingest_time_us=T0_US + n * 1_000_000,
    )
    signal = SIGNALS[n % len(SIGNALS)]
    return ScoredTrade(trade, None if signal is Signal.HOLD else Decimal("101.5"), signal)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path}/gateway.db"
    await migrate(url)
    opened = await open_sqlite_store(url)
    yield opened
    await opened.close()


async def client_of(store: Any) -> httpx.AsyncClient:
    app = create_app(store, MemoryPubSub(WINDOW), {}, window=WINDOW)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


def check_against_document(
    document: dict[str, Any], template: str, response: httpx.Response
) -> None:
    """The body validates against the schema the document gives `template` for its status."""
    declared = document["paths"][template]["get"]["responses"]
    status = str(response.status_code)
    assert status in declared, f"{template} answered undeclared {status}: {response.text}"
    media = response.headers["content-type"].split(";")[0]
    schema = declared[status]["content"][media]["schema"]
    validator = jsonschema_rs.validator_for(
        {**schema, "components": document["components"]}, validate_formats=True
    )
    errors = [error.message for error in validator.iter_errors(response.json())]
    assert not errors, f"{template} {status}: {errors}\n{response.text[:500]}"


class TimingOutStore:
    """A store whose every read runs out of time (the 503 path)."""

    def __getattr__(self, name: str) -> Any:
        async def read(*args: Any, **kwargs: Any) -> Any:
            raise QueryTimeout("the read took longer than 5s")

        return read


async def test_real_answers_validate_against_the_document(store: SqliteStore) -> None:
    """200s with data, 404s, our own and FastAPI's 422s and 503s all match what is declared."""
    await store.write([scored(n) for n in range(30)] + [scored(100, exchange="kraken")])
    cases = {
        "/api/v1/history/{symbol}": [
            "/api/v1/history/btc-usdt?limit=5",
            "/api/v1/history/BTCUSDT?start=2024-01-01&end=1704067210000&exchange=binance",
            "/api/v1/history/BTCUSDT?start=2024-01-02&end=2024-01-01",  # our own 422
            "/api/v1/history/B?limit=0",  # FastAPI's 422
        ],
        "/api/v1/candles/{symbol}": [
            "/api/v1/candles/BTCUSDT?interval=1s",
            "/api/v1/candles/BTCUSDT?interval=2m",
        ],
        "/api/v1/signals/{symbol}": [
            "/api/v1/signals/BTCUSDT",
            "/api/v1/signals/BTCUSDT?start=yesterday",
        ],
        "/api/v1/snapshot/{symbol}": ["/api/v1/snapshot/BTCUSDT", "/api/v1/snapshot/ETHUSDT"],
        "/api/v1/btc": ["/api/v1/btc"],
        "/api/v1/symbols": ["/api/v1/symbols"],
        "/healthz": ["/healthz"],
        "/readyz": ["/readyz"],
        "/schemas/ws-frame.json": [WS_FRAME_SCHEMA_PATH],
    }
    seen: set[int] = set()
    async with await client_of(store) as http:
        document = (await http.get("/openapi.json")).json()
        for template, urls in cases.items():
            for url in urls:
                response = await http.get(url)
                seen.add(response.status_code)
                check_against_document(document, template, response)
        paged = await http.get("/api/v1/history/BTCUSDT?limit=5")
    assert len(paged.json()) == 5
    assert jsonschema_rs.validator_for({"pattern": CURSOR_PATTERN}).is_valid(
        paged.headers["X-Next-Cursor"]
    )
    async with await client_of(TimingOutStore()) as http:
        for template in ("/api/v1/history/{symbol}", "/api/v1/symbols", "/api/v1/btc"):
            url = template.replace("{symbol}", "BTCUSDT")
            response = await http.get(url)
            seen.add(response.status_code)
            check_against_document(document, template, response)
    assert seen == {200, 404, 422, 503}


async def test_every_error_status_has_the_one_error_shape(store: SqliteStore) -> None:
    """Each operation declares 503 (and 422 when it has parameters) with the one error schema;
    FastAPI's own HTTPValidationError is gone."""
    async with await client_of(store) as http:
        document = (await http.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["Error"]["properties"] == {"detail": {"type": "string", "title": "Detail"}}
    assert schemas["NotReady"]["properties"]["detail"]["type"] == "string"
    api = {path: item["get"] for path, item in document["paths"].items() if "/api/" in path}
    for path, operation in api.items():
        responses = operation["responses"]
        errors = {status for status in responses if status >= "400"}
        assert "503" in errors, path
        if operation.get("parameters"):
            assert "422" in errors, path
        for status in errors:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (path, status)
    assert "404" in api["/api/v1/snapshot/{symbol}"]["responses"]
    assert "404" in api["/api/v1/btc"]["responses"]


async def test_validation_422s_are_one_sentence_like_every_other_error(
    store: SqliteStore,
) -> None:
    """FastAPI's 422 (bad limit, symbol) and the gateway's own 422 both carry a string detail
    that names the parameter, never the input."""
    async with await client_of(store) as http:
        bad_limit = await http.get("/api/v1/history/BTCUSDT?limit=5000")
        bad_symbol = await http.get("/api/v1/snapshot/" + "0" * 39)
        reversed_range = await http.get("/api/v1/signals/BTCUSDT?start=2024-01-02&end=2024-01-01")
    assert bad_limit.status_code == bad_symbol.status_code == reversed_range.status_code == 422
    assert bad_limit.json() == {"detail": "limit: Input should be less than or equal to 1000"}
    assert bad_symbol.json()["detail"].startswith("symbol: String should match pattern")
    assert reversed_range.json()["detail"].startswith(RANGE_ERROR)


async def test_constraints_enums_and_probes_are_declared(store: SqliteStore) -> None:
    """Symbol pattern and length, limit ranges, time forms, cursor form, the four enums; the
    probes and /metrics under their own tag; /btc's sma_20 names this deployment's window."""
    async with await client_of(store) as http:
        document = (await http.get("/openapi.json")).json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    history = {
        p["name"]: p["schema"] for p in paths["/api/v1/history/{symbol}"]["get"]["parameters"]
    }
    assert history["symbol"]["pattern"] == SYMBOL_PATTERN
    assert history["symbol"]["maxLength"] == 40
    assert (history["limit"]["minimum"], history["limit"]["maximum"]) == (1, 1000)
    assert history["cursor"]["anyOf"][0]["pattern"] == CURSOR_PATTERN
    forms = [branch.get("format") or branch["pattern"] for branch in history["start"]["anyOf"]]
    assert forms == ["date-time", "date", "^[0-9]{1,13}$"]
    candles = paths["/api/v1/candles/{symbol}"]["get"]["parameters"]
    assert {p["name"]: p["schema"] for p in candles}["interval"] == {
        "$ref": "#/components/schemas/CandleInterval",
        "description": "Length of a candle",
        "default": "1m",
    }
    assert schemas["CandleInterval"]["enum"] == ["1s", "1m", "5m", "15m", "1h", "1d"]
    assert schemas["Exchange"]["enum"] == ["simulated", "binance", "coinbase", "kraken"]
    assert schemas["Signal"]["enum"] == ["BUY", "SELL", "HOLD"]
    assert schemas["Side"]["enum"] == ["buy", "sell"]
    for name in ("HistoryTrade", "Snapshot", "SignalChangeItem", "BtcSnapshot", "CandleBar"):
        assert schemas[name]["additionalProperties"] is False, name
    for path in ("/healthz", "/readyz", "/metrics"):
        assert paths[path]["get"]["tags"] == ["operations"], path
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert "503" in paths["/readyz"]["get"]["responses"]
    sma_20 = schemas["BtcSnapshot"]["properties"]["sma_20"]["description"]
    assert "TICKPIPE_SMA_WINDOW" in sma_20
    assert f"Here: {WINDOW} trades." in sma_20


async def test_the_websocket_frame_schema_is_served_and_linked_from_docs(
    store: SqliteStore,
) -> None:
    """/schemas/ws-frame.json is the frame's JSON Schema; /docs' description links to it."""
    async with await client_of(store) as http:
        served = await http.get(WS_FRAME_SCHEMA_PATH)
        document = (await http.get("/openapi.json")).json()
        docs = await http.get("/docs")
    assert served.status_code == 200
    assert served.json() == ws_frame_schema()
    assert set(served.json()["required"]) >= {
        "type", "exchange", "symbol", "trade_id", "price", "quantity", "sma", "signal", "timestamp"
    }  # fmt: skip
    assert f"(.{WS_FRAME_SCHEMA_PATH})" in document["info"]["description"]
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text


@given(st.datetimes(timezones=st.timezones()))
def test_any_rfc3339_time_is_read_and_clamped_to_1970_2100(moment: datetime) -> None:
    """Every RFC 3339 date-time (any year, any offset) is read exactly, then clamped."""
    offset = moment.utcoffset()
    assume(offset is not None and not offset % timedelta(minutes=1))  # RFC 3339: whole minutes
    text = moment.isoformat()
    expected = min(max(datetime_to_time_us(moment), 0), MAX_TIME_US)
    assert parse_time_us(text, "start") == expected
    assert parse_time_us(text.lower(), "start") == expected  # `t` and `z` are allowed


@pytest.mark.parametrize(
    ("text", "time_us"),
    [
        ("2024-01-01", T0_US),
        ("2024-01-01T01:00:00+01:00", T0_US),
        ("2024-01-01T00:00:00.1234567Z", T0_US + 123_456),
        ("1704067200000", T0_US),
        ("9999999999999", MAX_TIME_US),
        ("1900-01-01T00:00:00Z", 0),
    ],
)
def test_time_forms_of_the_document_are_read(text: str, time_us: int) -> None:
    """Dates are UTC midnight, offsets apply, finer than microseconds is cut, bounds clamp."""
    assert parse_time_us(text, "start") == time_us


@given(st.integers(0, 10**19 - 1), st.integers(0, 10**19 - 1))
def test_any_cursor_of_the_declared_form_is_a_place_in_history(time_us: int, row_id: int) -> None:
    """A cursor is `<time_us>_<row_id>`; past the end means the end; encoding round-trips."""
    key = decode_cursor(f"{time_us}_{row_id}")
    assert key == HistoryKey(min(time_us, END_OF_HISTORY.time_us), min(row_id, 2**63 - 1))
    assert decode_cursor(encode_cursor(key)) == key
