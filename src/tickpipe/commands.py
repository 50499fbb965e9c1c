"""The `tickpipe` sub-commands, each wiring adapters into services (cli.py parses arguments)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tickpipe import wiring
from tickpipe.adapters.bus.memory import MemoryBus
from tickpipe.adapters.store.errors import describe_url
from tickpipe.config import Settings
from tickpipe.core.scoring import Scorer
from tickpipe.ports import TradeConsumer, TradeSink, TradeSource, TradeStore, UpdatePublisher
from tickpipe.services.gateway.headers import SecurityHeaders
from tickpipe.services.ingestor import run_ingestor
from tickpipe.services.processor import Processor
from tickpipe.services.publishing import queued_publisher
from tickpipe.services.runtime import HttpServer, Worker, http_server, run_service
from tickpipe.telemetry.logs import fields
from tickpipe.telemetry.probes import Check, DependencyFailing, probe_routes

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from tickpipe.ports import TradeRecording
    from tickpipe.services.export import ExportOptions
    from tickpipe.services.gateway.app import GatewayOptions
    from tickpipe.services.replay import ReplayOptions, ReplaySummary

log = logging.getLogger("tickpipe")

DEFAULT_INGEST_METRICS_PORT = 9100
DEFAULT_PROCESS_METRICS_PORT = 9101
HTTP_CONNECTION_HEADROOM = 500  # connections beyond the WebSocket limit, for HTTP requests


async def migrate(settings: Settings) -> None:
    applied = await wiring.migrate_store(settings.database_url)
    where = describe_url(settings.database_url)
    log.info(
        "schema of %s is up to date (%s)",
        where,
        ", ".join(applied) or "nothing to apply",
        extra=fields("schema_up_to_date", migrations=list(applied)),
    )


async def run(settings: Settings) -> None:
    """Ingestor + processor + gateway in one process; embedded back-ends where none is named."""
    from tickpipe.services.gateway.app import create_app  # FastAPI: only where it is served

    await wiring.migrate_store(settings.database_url)
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_open_store(settings))
        updates = await stack.enter_async_context(
            wiring.open_updates(settings, "run", embedded=True)
        )
        publisher = await stack.enter_async_context(queued_publisher(updates.publisher))
        sink: TradeSink
        consumer: TradeConsumer
        if settings.uses_kafka():
            sink = await stack.enter_async_context(wiring.open_kafka_sink(settings, "run"))
            consumer = await stack.enter_async_context(wiring.open_kafka_consumer(settings, "run"))
            drain = False
        else:
            sink = consumer = MemoryBus(settings.kafka_queue_max)
            drain = True  # the in-process bus is not durable: process what it holds before exit
        source = wiring.open_source(settings)
        processor = build_processor(settings, consumer, store, publisher)
        checks = _store_checks(store) | {
            "pubsub": updates.feed.ping,
            "processor": _healthy(processor),
            "venues": source.check,  # names each venue down
        }
        if settings.uses_kafka():
            checks["kafka"] = wiring.kafka_check(settings)
        app = create_app(
            store,
            updates.feed,
            checks,
            window=settings.sma_window,
            client_queue_frames=settings.ws_client_queue,
            options=gateway_options(settings),
        )
        server = _gateway_server(settings, app)
        await run_service(
            [
                _ingest_worker(source, sink),
                Worker("processor", lambda stop: processor.run(stop, drain=drain)),
                *_metrics_workers(settings, checks),
            ],
            server,
            on_started=lambda: _announce(
                server,
                f"run: {source.describe()} -> {describe_url(settings.database_url)}",
            ),
        )


async def ingest(settings: Settings) -> None:
    kafka = wiring.require_kafka(settings, "ingest")
    async with wiring.open_kafka_sink(settings, "ingest") as sink:
        source = wiring.open_source(settings)
        checks = {"kafka": wiring.kafka_check(settings), "venues": source.check}
        server = _probe_server(settings, checks, DEFAULT_INGEST_METRICS_PORT)
        await run_service(
            [_ingest_worker(source, sink)],
            server,
            on_started=lambda: log.info(
                "ingesting %s into Kafka %s topic %r",
                source.describe(),
                kafka.bootstrap_servers,
                settings.kafka_topic,
                extra=fields(
                    "ingest_started",
                    venues=list(settings.venues()),
                    topic=settings.kafka_topic,
                ),
            ),
        )


async def process(settings: Settings) -> None:
    kafka = wiring.require_kafka(settings, "process")
    wiring.require_redis(settings, "process")
    async with contextlib.AsyncExitStack() as stack:
        # Subscribed first: a new group's join takes seconds (on Tansu half the session timeout)
        # and goes on in the background while the store and Redis open.
        consumer = await stack.enter_async_context(wiring.open_kafka_consumer(settings, "process"))
        store = await stack.enter_async_context(_open_store(settings))
        updates = await stack.enter_async_context(
            wiring.open_updates(settings, "process", embedded=False)
        )
        publisher = await stack.enter_async_context(queued_publisher(updates.publisher))
        # Closed again (a no-op then) on the way out, but first of all: before the publisher
        # stops, so that what the consumer's last revoke flushes is still published.
        stack.push_async_callback(consumer.close)
        processor = build_processor(settings, consumer, store, publisher)
        checks = _store_checks(store) | {
            "redis": updates.feed.ping,
            "kafka": wiring.kafka_check(settings),
            "processor": _healthy(processor),
        }
        server = _probe_server(settings, checks, DEFAULT_PROCESS_METRICS_PORT)
        await run_service(
            [Worker("processor", processor.run)],
            server,
            on_started=lambda: log.info(
                "processing Kafka %s topic %r (group %r) into %s, updates to Redis channel %r",
                kafka.bootstrap_servers,
                settings.kafka_topic,
                settings.kafka_group,
                describe_url(settings.database_url),
                settings.redis_channel,
                extra=fields(
                    "process_started", topic=settings.kafka_topic, group=settings.kafka_group
                ),
            ),
        )


async def gateway(settings: Settings) -> None:
    from tickpipe.services.gateway.app import create_app

    wiring.require_redis(settings, "gateway")
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_open_store(settings))
        updates = await stack.enter_async_context(
            wiring.open_updates(settings, "gateway", embedded=False)
        )
        checks = _store_checks(store) | {"redis": updates.feed.ping}
        app = create_app(
            store,
            updates.feed,
            checks,
            window=settings.sma_window,
            client_queue_frames=settings.ws_client_queue,
            options=gateway_options(settings),
        )
        server = _gateway_server(settings, app)
        await run_service(
            _metrics_workers(settings, checks),
            server,
            on_started=lambda: _announce(
                server, f"gateway over {describe_url(settings.database_url)} and Redis"
            ),
        )


async def replay(settings: Settings, options: ReplayOptions) -> None:
    """Recorded trades into the configured bus: Kafka when named (the running processors score
    and store them); otherwise through an in-process processor straight into the database (and
    Redis when named), since an in-process bus has no other consumer."""
    from tickpipe.adapters.replay_files import open_recording
    from tickpipe.services.replay import ReplayFailed, replay_recordings

    recordings: list[TradeRecording] = []
    for name in options.files:
        try:
            recordings.append(
                open_recording(
                    Path(name),
                    options.replay_format,
                    symbol=options.symbol,
                    now_us=lambda: time.time_ns() // 1000,
                )
            )
        except (OSError, ValueError) as exc:
            raise ReplayFailed(f"cannot replay {name}: {exc}") from None
    if settings.uses_kafka():
        async with wiring.open_kafka_sink(settings, "replay") as sink:
            log.info("replaying into Kafka topic %r", settings.kafka_topic)
            summary = await replay_recordings(
                recordings, sink, speed=options.speed, strict=options.strict
            )
    else:
        await wiring.migrate_store(settings.database_url)
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(_open_store(settings))
            updates = await stack.enter_async_context(
                wiring.open_updates(settings, "replay", embedded=True)
            )
            bus = MemoryBus(settings.kafka_queue_max)
            processor = build_processor(settings, bus, store, updates.publisher)
            log.info("replaying into %s", describe_url(settings.database_url))
            summary = await _replay_through(processor, bus, recordings, options)
    print(summary)


async def _replay_through(
    processor: Processor,
    bus: MemoryBus,
    recordings: list[TradeRecording],
    options: ReplayOptions,
) -> ReplaySummary:
    """Feeds the bus while the processor drains it; the time includes the last batch stored."""
    from tickpipe.services.replay import ReplayFailed, replay_recordings

    stop = asyncio.Event()
    started_s = time.monotonic()
    worker = asyncio.create_task(processor.run(stop, drain=True))
    feeder = asyncio.create_task(
        replay_recordings(recordings, bus, speed=options.speed, strict=options.strict)
    )
    try:
        await asyncio.wait({worker, feeder}, return_when=asyncio.FIRST_COMPLETED)
        if not feeder.done():  # the processor returns only once stopped: it crashed
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            worker.result()
            raise ReplayFailed("the processor stopped before the replay ended")
        summary = feeder.result()
    finally:
        stop.set()
        await worker  # drains the bus and stores the last batch
    return dataclasses.replace(summary, duration_s=time.monotonic() - started_s)


def build_processor(
    settings: Settings,
    consumer: TradeConsumer,
    store: TradeStore,
    publisher: UpdatePublisher,
) -> Processor:
    """The processor every command builds (the benchmarks build `run`'s with it too)."""
    return Processor(
        consumer,
        store,
        publisher,
        Scorer(settings.sma_window),
        max_batch_trades=settings.batch_max_trades,
        max_batch_age_s=settings.batch_max_age_ms / 1000,
    )


def _ingest_worker(source: TradeSource, sink: TradeSink) -> Worker:
    return Worker("ingestor", lambda stop: run_ingestor(source, sink, stop))


def _store_checks(store: TradeStore) -> dict[str, Check]:
    return {"database": store.ping}


def _open_store(settings: Settings) -> contextlib.AbstractAsyncContextManager[TradeStore]:
    timeout_s = settings.query_timeout_ms / 1000
    return wiring.open_store(settings.database_url, query_timeout_s=timeout_s)


def _healthy(processor: Processor) -> Check:
    """Names the processor's failing dependencies (database, kafka) for /readyz."""

    async def check() -> None:
        if processor.failing:
            raise DependencyFailing(processor.failing)

    return check


def gateway_options(settings: Settings) -> GatewayOptions:
    from tickpipe.services.gateway.admission import parse_trusted_proxies
    from tickpipe.services.gateway.app import GatewayOptions

    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    return GatewayOptions(
        ws_max_clients=settings.ws_max_clients,
        ws_max_clients_per_ip=settings.ws_max_clients_per_ip,
        trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
        cors_origins=["*"] if "*" in origins else origins,
        public_url=settings.public_url,
        serve_metrics=settings.metrics_port is None,
        candles_max_scan_us=round(settings.candles_max_scan_days * 86_400_000_000),
    )


def _gateway_server(settings: Settings, app: ASGIApp) -> HttpServer:
    """The public HTTP server; every WebSocket slot plus room for HTTP requests."""
    max_connections = settings.http_max_connections or (
        settings.ws_max_clients + HTTP_CONNECTION_HEADROOM
    )
    return http_server(app, settings.http_host, settings.http_port, max_connections=max_connections)


def _metrics_workers(settings: Settings, checks: dict[str, Check]) -> list[Worker]:
    """With TICKPIPE_METRICS_PORT set, the gateway's /metrics (with /healthz and /readyz) is
    served there, not on the public port; unset, there is nothing more to serve."""
    if settings.metrics_port is None:
        return []
    server = _probe_server(settings, checks, settings.metrics_port)

    async def serve(stop: asyncio.Event) -> None:
        serving = asyncio.create_task(server.serve(), name="metrics-http")
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        server.should_exit = True
        await serving
        if not stop.is_set():
            raise RuntimeError(f"the metrics server on port {settings.metrics_port} stopped")

    return [Worker("metrics", serve)]


def _probe_server(settings: Settings, checks: dict[str, Check], default_port: int) -> HttpServer:
    from starlette.applications import Starlette

    port = default_port if settings.metrics_port is None else settings.metrics_port
    app = SecurityHeaders(Starlette(routes=probe_routes(checks)))
    return http_server(app, settings.http_host, port)


def _announce(server: HttpServer, what: str) -> None:
    host, port = _bound_address(server)
    log.info(
        "tickpipe %s; dashboard and API on http://%s:%d",
        what,
        host,
        port,
        extra=fields("http_serving", host=host, port=port),
    )


def _bound_address(server: HttpServer) -> tuple[str, int]:
    for listener in server.servers:
        for sock in listener.sockets:
            address = sock.getsockname()
            return str(address[0]), int(address[1])
    return server.config.host, server.config.port


async def export(settings: Settings, options: ExportOptions) -> None:
    """The stored trades of one symbol into a file (TICKPIPE_DATABASE_URL), oldest first."""
    from tickpipe.adapters.store.errors import StoreUnavailable
    from tickpipe.adapters.store.export_reads import StoredTrades
    from tickpipe.services.export import ExportFailed, export_trades

    try:
        rows = StoredTrades(settings.database_url, options.query)
        summary = await export_trades(rows, options.export_format, options.path)
    except (StoreUnavailable, ValueError) as exc:
        raise ExportFailed(str(exc)) from None
    log.info("%s", summary)


def process_workers(settings: Settings, command_argv: Sequence[str]) -> None:
    """`tickpipe process` with TICKPIPE_WORKERS > 1: that many `tickpipe process` children, one
    consumer each in the group, under this command (services/workers.py)."""
    from tickpipe.services.workers import run_workers, start_workers, worker_ports

    wiring.require_kafka(settings, "process")  # one clear line here, not one per worker
    wiring.require_redis(settings, "process")
    port = DEFAULT_PROCESS_METRICS_PORT if settings.metrics_port is None else settings.metrics_port
    if port == 0 or port + settings.workers > 65_535:
        raise wiring.InvalidConfiguration(
            f"TICKPIPE_WORKERS={settings.workers} needs TICKPIPE_METRICS_PORT between 1 and"
            f" {65_535 - settings.workers}: the workers serve theirs on the ports after it"
        )
    ports = worker_ports(port, settings.workers)
    children = start_workers(command_argv, ports)
    try:
        asyncio.run(run_workers(children, ports, settings.http_host, port))
    finally:
        for child in children:  # only if the command failed before it could stop them
            if child.poll() is None:
                child.kill()
                child.wait()


def run_command(
    name: str,
    settings: Settings,
    replay_options: ReplayOptions | None = None,
    export_options: ExportOptions | None = None,
    command_argv: Sequence[str] = (),
) -> None:
    if name == "process" and settings.workers > 1:
        process_workers(settings, command_argv)
        return
    if name == "export":
        assert export_options is not None  # cli.py always builds them for `export`
        asyncio.run(export(settings, export_options))
        return
    if name == "replay":
        assert replay_options is not None  # cli.py always builds them for `replay`
        asyncio.run(replay(settings, replay_options))
        return
    commands = {
        "run": run,
        "migrate": migrate,
        "ingest": ingest,
        "process": process,
        "gateway": gateway,
    }
    asyncio.run(commands[name](settings))
