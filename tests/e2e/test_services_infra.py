"""The four commands as separate processes on real infrastructure: `migrate`, `ingest`
(simulated), two `process` instances and `gateway`, over the Tansu broker, PostgreSQL and Redis.
Checks directly in PostgreSQL that every produced trade is stored exactly once, exactly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient
from websockets.asyncio.client import connect

from fixtures.monitoring import exported_names, monitoring_expressions, unexported
from fixtures.procs import free_port, tickpipe_process
from fixtures.waiting import wait_until, wait_until_async
from tickpipe.adapters.exchanges.simulated import SimulatedMarket
from tickpipe.core.rolling import RollingMean

pytestmark = [pytest.mark.infra, pytest.mark.slow]

SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,ADAUSDT"
SEED = 11
WINDOW = 5
PROCESS_METRICS = [
    "tickpipe_trades_processed_total{",
    "tickpipe_batch_size_bucket{",
    "tickpipe_flush_seconds_bucket{",
    "tickpipe_consumer_lag ",
    "tickpipe_ingest_to_published_seconds_bucket{",
    "tickpipe_exchange_to_processed_seconds_bucket{",
]


def migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickpipe", "migrate"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def stored_rows(url: str) -> list[asyncpg.Record]:
    db = await asyncpg.connect(url)
    try:
        return await db.fetch(
            "SELECT symbol, trade_id, price, quantity, side, sma, signal FROM trades ORDER BY id"
        )
    finally:
        await db.close()


def wait_for_rows(url: str, expected: int, timeout_s: float = 30.0) -> list[asyncpg.Record]:
    deadline = time.monotonic() + timeout_s
    rows: list[asyncpg.Record] = []
    while time.monotonic() < deadline:
        rows = asyncio.run(stored_rows(url))
        if len(rows) >= expected:
            return rows
        time.sleep(0.3)
    return rows


def processed_by(proc_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{proc_port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tickpipe_trades_processed_total{")
    )


def websocket_clients(gateway_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{gateway_port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tickpipe_websocket_clients ")
    )


def group_is_stable(bootstrap: str, group: str) -> bool:
    """The broker's view: the group's members joined and were given their partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=5)
    except KafkaException:
        return False
    return bool(description.state == ConsumerGroupState.STABLE)


async def collect_frames(
    url: str, stop_after_idle_s: float, first_frame_within_s: float = 60.0
) -> list[dict[str, object]]:
    """Every frame until the stream has been idle for `stop_after_idle_s` after the first one
    (the ingestor may take a while to start producing on a loaded machine)."""
    frames: list[dict[str, object]] = []
    async with connect(url) as ws:
        while True:
            wait_s = stop_after_idle_s if frames else first_frame_within_s
            try:
                frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), wait_s)))
            except TimeoutError:
                return frames


def test_four_services_store_every_trade_once(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """ingest -> Kafka -> 2 x process -> PostgreSQL + Redis -> gateway -> WebSocket: once each."""
    channel, prefix = redis_names
    env = {
        "TICKPIPE_DATABASE_URL": empty_postgres_url,
        "TICKPIPE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TICKPIPE_KAFKA_TOPIC": kafka_topic,
        "TICKPIPE_KAFKA_GROUP": f"group-{kafka_topic}",
        "TICKPIPE_REDIS_URL": redis_url,
        "TICKPIPE_REDIS_CHANNEL": channel,
        "TICKPIPE_REDIS_PREFIX": prefix,
        "TICKPIPE_SYMBOLS": SYMBOLS,
        "TICKPIPE_SIM_SEED": str(SEED),
        "TICKPIPE_SIM_RATE": "400",
        "TICKPIPE_SMA_WINDOW": str(WINDOW),
    }
    first, second = migrate(env), migrate(env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "nothing to apply" in second.stderr

    gateway_port, process_ports = free_port(), [free_port(), free_port()]
    with (
        tickpipe_process(
            ["process"],
            {**env, "TICKPIPE_METRICS_PORT": str(process_ports[0])},
            tmp_path / "process-1.log",
        ) as process_1,
        tickpipe_process(
            ["process"],
            {**env, "TICKPIPE_METRICS_PORT": str(process_ports[1])},
            tmp_path / "process-2.log",
        ) as process_2,
        tickpipe_process(
            ["gateway"],
            {**env, "TICKPIPE_HTTP_PORT": str(gateway_port)},
            tmp_path / "gateway.log",
        ) as gateway,
    ):
        for proc, port in ((process_1, process_ports[0]), (process_2, process_ports[1])):
            proc.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=30)
        gateway.wait_http(f"http://127.0.0.1:{gateway_port}/readyz")
        wait_until(
            lambda: group_is_stable(kafka_bootstrap, env["TICKPIPE_KAFKA_GROUP"]),
            30,
            "the processors joined the group and split the partitions",
        )

        ingest_port = free_port()
        ingest_metrics: list[str] = []
        ws_url = f"ws://127.0.0.1:{gateway_port}/ws"

        async def ingest_while_listening() -> list[dict[str, object]]:
            listening = asyncio.create_task(collect_frames(ws_url, stop_after_idle_s=6.0))
            await wait_until_async(
                lambda: websocket_clients(gateway_port) >= 1, 10, "the listener connected"
            )
            with tickpipe_process(
                ["ingest"],
                {**env, "TICKPIPE_METRICS_PORT": str(ingest_port)},
                tmp_path / "ingest.log",
            ) as ingest:
                await asyncio.to_thread(ingest.wait_http, f"http://127.0.0.1:{ingest_port}/healthz")
                await asyncio.to_thread(
                    wait_until,
                    lambda: min(processed_by(port) for port in process_ports) >= 50,
                    30,
                    "both processors store a steady flow",
                )
                scrape = f"http://127.0.0.1:{ingest_port}/metrics"
                ingest_metrics.append((await asyncio.to_thread(httpx.get, scrape)).text)
                assert await asyncio.to_thread(ingest.terminate) == 0, ingest.log()
            return await listening

        frames = asyncio.run(ingest_while_listening())
        first_id, produced = ids_by_symbol(frames)

        rows = wait_for_rows(empty_postgres_url, sum(produced.values()))
        time.sleep(1.0)
        rows = wait_for_rows(empty_postgres_url, sum(produced.values()))  # nothing more came
        check_exactly_once(rows, first_id, produced)
        check_exact_values(rows, first_id)
        check_sma_per_symbol(rows)
        assert len(frames) == len(rows), "every stored trade reached the WebSocket client"
        assert processed_by(process_ports[0]) > 0, "the first processor took partitions"
        assert processed_by(process_ports[1]) > 0, "the second processor took partitions"
        process_metrics = httpx.get(f"http://127.0.0.1:{process_ports[0]}/metrics").text
        for family in PROCESS_METRICS:
            assert f"\n{family}" in process_metrics, family
        gateway_metrics = httpx.get(f"http://127.0.0.1:{gateway_port}/metrics").text
        assert "\ntickpipe_websocket_clients " in gateway_metrics
        check_monitoring_names([*ingest_metrics, process_metrics, gateway_metrics])
        for proc in (process_1, process_2, gateway):
            assert proc.terminate() == 0, proc.log()


def check_monitoring_names(metrics_answers: list[str]) -> None:
    """Every metric the alert rules and the Grafana dashboard use is in a real /metrics answer
    of ingest, process or gateway, after trades flowed (tests/deploy/test_monitoring.py proves
    that a renamed metric fails this)."""
    assert len(metrics_answers) == 3
    exported = set().union(*(exported_names(text) for text in metrics_answers))
    for flowed in (
        "tickpipe_trades_ingested_total",
        "tickpipe_exchange_to_processed_seconds_bucket",
    ):
        assert any(f"\n{flowed}{{" in text for text in metrics_answers), flowed
    assert '\ntickpipe_dependency_up{dependency="kafka"} 1.0' in metrics_answers[0]
    assert unexported(monitoring_expressions(), exported) == {}


def ids_by_symbol(frames: list[dict[str, object]]) -> tuple[int, dict[str, int]]:
    """The run's first trade id (every symbol starts there) and how many trades each symbol had,
    as seen by the WebSocket client."""
    ids: dict[str, list[int]] = defaultdict(list)
    for frame in frames:
        ids[str(frame["symbol"])].append(int(str(frame["trade_id"])))
    assert len(ids) == 6, f"frames of every symbol arrived: {sorted(ids)}"
    first_ids = {min(symbol_ids) for symbol_ids in ids.values()}
    assert len(first_ids) == 1, "every symbol's ids start at the run's first id"
    first_id = first_ids.pop()
    return first_id, {s: max(symbol_ids) - first_id + 1 for s, symbol_ids in ids.items()}


def check_exactly_once(rows: list[asyncpg.Record], first_id: int, produced: dict[str, int]) -> None:
    """Simulated ids run first..first+N-1 per symbol: N rows, N distinct ids, none missing."""
    ids: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        ids[row["symbol"]].append(int(row["trade_id"]))
    for symbol, count in produced.items():
        assert sorted(ids[symbol]) == list(range(first_id, first_id + count)), symbol


def check_exact_values(rows: list[asyncpg.Record], first_id: int) -> None:
    """Stored prices and quantities equal, digit for digit, what the seeded market generated."""
    market = SimulatedMarket(SYMBOLS.split(","), 1.0, SEED, first_id)
    expected = {}
    for _ in range(len(rows)):
        trade = market.next_trade(1_700_000_000_000_000)
        expected[(trade.symbol, trade.trade_id)] = trade
    for row in rows:
        trade = expected[(row["symbol"], row["trade_id"])]
        assert row["price"] == trade.price
        assert str(row["price"]) == str(trade.price)
        assert row["quantity"] == trade.quantity
        assert str(row["quantity"]) == str(trade.quantity)
        assert row["side"] == trade.side


def check_sma_per_symbol(rows: list[asyncpg.Record]) -> None:
    """Whichever instance processed it, each trade has the SMA of its symbol's last N prices."""
    by_symbol: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_symbol[row["symbol"]].append(row)
    for symbol_rows in by_symbol.values():
        window = RollingMean(WINDOW)
        for row in sorted(symbol_rows, key=lambda r: int(r["trade_id"])):
            sma = window.push(Decimal(row["price"]))
            if sma is None:
                assert row["sma"] is None
                assert row["signal"] == "HOLD"
            else:
                assert row["sma"] == pytest.approx(float(sma), rel=1e-12)
