"""tickpipe's figures, from its real services run as processes (`python -m tickpipe ...`):
processor throughput and peak RSS, end-to-end latency at a steady rate, gateway fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from websockets.asyncio.client import connect

from benchmarks.harness import hist, infra, workload
from tickpipe.adapters.store.migrate import migrate

COMMIT_POLL_S = 0.1
Counter = Callable[[], int]  # how many messages of a topic a job has done so far


@dataclass
class Progress:
    """Samples of (seconds since start, messages done) while a job works through a topic."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def rate_per_s(self) -> float:
        """Messages/s from the first sample with progress to the last (the first batch, done
        before the first sample, is not counted, nor the time it took)."""
        moving = [(t, n) for t, n in self.samples if n > 0]
        if len(moving) < 2 or moving[-1][0] <= moving[0][0]:
            return 0.0
        (t0, n0), (t1, n1) = moving[0], moving[-1]
        return (n1 - n0) / (t1 - t0)


def watch(
    done: Counter,
    target: int,
    child: subprocess.Popen[bytes],
    timeout_s: float,
) -> Progress:
    progress = Progress()
    started_s = time.monotonic()
    while True:
        count = done()
        now_s = time.monotonic() - started_s
        if not progress.samples or count != progress.samples[-1][1]:
            progress.samples.append((now_s, count))
        if count >= target:
            return progress
        if child.poll() is not None:
            raise RuntimeError(f"{child.args[:4]} exited with {child.returncode}; see its log")
        if now_s > timeout_s:
            raise RuntimeError(f"{count} of {target} messages done after {timeout_s:g} s")
        time.sleep(COMMIT_POLL_S)


@contextlib.contextmanager
def committed_offsets(bootstrap: str, topic: str, group: str) -> Iterator[Counter]:
    """A function: the sum of `group`'s committed offsets on `topic` (it never joins the group)."""
    partitions = infra.partitions_of(bootstrap, topic)
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})

    def total() -> int:
        return sum(max(p.offset, 0) for p in reader.committed(partitions, timeout=10))

    try:
        yield total
    finally:
        reader.close()


@contextlib.contextmanager
def messages_in(bootstrap: str, topic: str) -> Iterator[Counter]:
    """A function: how many messages of `topic` a reader has seen so far. It reads every
    partition from the start on a thread of its own, outside any group. (Tansu's high
    watermarks lag behind the last batch of each partition, so they cannot be used.)"""
    partitions = [
        TopicPartition(p.topic, p.partition, OFFSET_BEGINNING)
        for p in infra.partitions_of(bootstrap, topic)
    ]
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-reader",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 0,
        }
    )
    reader.assign(partitions)
    seen = [0]
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            batch = reader.consume(10_000, 0) or reader.consume(1, 0.05)
            seen[0] += sum(1 for message in batch if message.error() is None)

    thread = threading.Thread(target=read, name="bench-reader", daemon=True)
    thread.start()
    try:
        yield lambda: seen[0]
    finally:
        stop.set()
        thread.join(5)
        reader.close()


# The newest row's id, by one index probe per stream ((exchange, symbol, id)): after TRUNCATE ...
# RESTART IDENTITY, with batches committed in order, the rows stored so far, without a count(*)
# scan every poll.
_STORED_SO_FAR = """
SELECT coalesce(max(newest.id), 0) FROM unnest($1::text[]) AS s(symbol)
CROSS JOIN LATERAL (
    SELECT id FROM trades WHERE exchange = 'simulated' AND symbol = s.symbol
    ORDER BY id DESC LIMIT 1
) AS newest
"""


@contextlib.contextmanager
def stored_so_far(database_url: str) -> Iterator[Counter]:
    """A function: the rows stored so far in `trades` (polled; see _STORED_SO_FAR)."""
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(database_url))

    def stored() -> int:
        return int(loop.run_until_complete(connection.fetchval(_STORED_SO_FAR, workload.SYMBOLS)))

    try:
        yield stored
    finally:
        loop.run_until_complete(connection.close())
        loop.close()


@contextlib.contextmanager
def redis_deliveries(channel: str) -> Iterator[Counter]:
    """A function: how many trade updates were published on `channel` so far (one line per
    trade per message), counted by a subscriber on a thread of its own."""
    from redis import Redis

    client = Redis.from_url(infra.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    seen = [0]
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None and message["type"] == "message":
                seen[0] += message["data"].count(b"\n") + 1

    thread = threading.Thread(target=read, name="bench-redis-reader", daemon=True)
    thread.start()
    try:
        yield lambda: seen[0]
    finally:
        stop.set()
        thread.join(5)
        pubsub.close()
        client.close()


def migrate_database(database_url: str) -> None:
    asyncio.run(migrate(database_url))


async def _stored_rows(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM trades"))
    finally:
        await connection.close()


def stored_rows(database_url: str) -> int:
    return asyncio.run(_stored_rows(database_url))


async def _truncate(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("TRUNCATE trades RESTART IDENTITY")
    finally:
        await connection.close()


def truncate(database_url: str) -> None:
    asyncio.run(_truncate(database_url))


def start_processor(
    processes: infra.Processes, env: infra.TickpipeEnv, name: str
) -> tuple[subprocess.Popen[bytes], int]:
    """`tickpipe process`, ready (its /readyz answers 200); returns it and its metrics port."""
    metrics_port = infra.free_port()
    child = processes.start(
        name, infra.tickpipe_argv("process"), env.environ(TICKPIPE_METRICS_PORT=str(metrics_port))
    )
    infra.wait_http_ok(f"http://127.0.0.1:{metrics_port}/readyz", child)
    return child, metrics_port


def start_gateway(
    processes: infra.Processes, env: infra.TickpipeEnv, name: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = infra.free_port()
    child = processes.start(
        name, infra.tickpipe_argv("gateway"), env.environ(TICKPIPE_HTTP_PORT=str(port))
    )
    infra.wait_http_ok(f"http://127.0.0.1:{port}/readyz", child)
    return child, port


@dataclass
class Throughput:
    trades_per_s: float  # rows stored, from the first stored row to the last (polled)
    peak_rss_mib: float
    progress: Progress
    stored: int
    cpu_pct: float  # CPU time of the processor process over wall time, first to last row
    committed_per_s: float  # the same, from its first offset commit to its last
    delivered: int  # trade updates published to Redis (a dropped update shows here)
    machine_busy_pct: float  # of all cores, whatever used them, first to last row


def processor_throughput(
    processes: infra.Processes,
    env: infra.TickpipeEnv,
    count: int,
    *,
    timeout_s: float,
    profile_argv: list[str] | None = None,
) -> Throughput:
    """Runs `tickpipe process` over a pre-filled topic of `count` trades: trades/s from the
    first row stored to the last (rows polled every 100 ms, like the peer's), the same from its
    first offset commit to its last, peak RSS, the stored row count and the updates delivered
    to a Redis subscriber. `profile_argv` (e.g. py-spy record), given the processor's pid as
    its last argument, runs beside it."""
    with redis_deliveries(env.redis.channel) as delivered:
        child, _ = start_processor(processes, env, "process-throughput")
        profiler = None
        if profile_argv is not None:
            profiler = processes.start("profiler", [*profile_argv, str(child.pid)])
        # (wall s, CPU s, machine busy and all CPU s) at the first stored row
        cpu_from: list[tuple[float, float, tuple[float, float]]] = []
        commits = Progress()
        try:
            with (
                committed_offsets(env.bootstrap, env.topic, env.group) as committed,
                stored_so_far(env.database_url) as stored,
            ):
                started_s = time.monotonic()

                def counted() -> int:
                    done = stored()
                    if done and not cpu_from:
                        cpu_from.append(
                            (
                                time.monotonic(),
                                infra.cpu_seconds(child.pid),
                                infra.machine_cpu_seconds(),
                            )
                        )
                    offsets = committed()
                    if not commits.samples or offsets != commits.samples[-1][1]:
                        commits.samples.append((time.monotonic() - started_s, offsets))
                    return done

                progress = watch(counted, count, child, timeout_s)
                while committed() < count and time.monotonic() - started_s < timeout_s:
                    time.sleep(COMMIT_POLL_S)
                commits.samples.append((time.monotonic() - started_s, committed()))
            peak_rss_kib = infra.proc_status_kib(child.pid, "VmHWM") or 0
            wall_s = time.monotonic() - cpu_from[0][0]
            cpu_pct = 100 * (infra.cpu_seconds(child.pid) - cpu_from[0][1]) / wall_s
            busy_s, all_s = infra.machine_cpu_seconds()
            machine_busy_pct = 100 * (busy_s - cpu_from[0][2][0]) / (all_s - cpu_from[0][2][1])
            deadline_s = time.monotonic() + 5.0  # the last batch's publish follows its commit
            while delivered() < count and time.monotonic() < deadline_s:
                time.sleep(COMMIT_POLL_S)
        finally:
            if profiler is not None:
                # py-spy writes its file on SIGINT (Ctrl-C), not on SIGTERM.
                processes.stop(profiler, timeout_s=30, signal_number=signal.SIGINT)
            processes.stop(child)
        return Throughput(
            progress.rate_per_s(),
            peak_rss_kib / 1024,
            progress,
            stored_rows(env.database_url),
            cpu_pct,
            commits.rate_per_s(),
            delivered(),
            machine_busy_pct,
        )


@dataclass
class Latency:
    ingest_to_client_ms: dict[str, float]
    exchange_to_client_ms: dict[str, float]
    ingest_to_redis_ms: dict[str, float]  # published by the processor, before the gateway
    frames: int
    rss_samples_mib: list[tuple[float, float]]  # seconds since the measurement began, MiB
    processor_means: dict[str, float]  # from its /metrics: store write ms, trades per batch
    worst_ms_per_s: list[float]  # the worst ingest -> client latency of each measured second
    first_trade_s: float  # from launching the services (all at once) to the client's first frame
    cold_ms: dict[str, float]  # ingest -> client percentiles over the first COLD_START_S


def scrape_means(metrics_port: int) -> dict[str, float]:
    """Means of the processor's batch histograms over its whole run (Prometheus sums/counts)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.endswith(("_sum", "_count")) and "{" not in name:
            values[name] = float(value)

    def mean(histogram: str) -> float:
        count = values.get(f"{histogram}_count", 0.0)
        return values.get(f"{histogram}_sum", 0.0) / count if count else 0.0

    return {
        "store_write_ms": 1000 * mean("tickpipe_flush_seconds"),
        "trades_per_batch": mean("tickpipe_batch_size"),
    }


def _items(message: str | bytes) -> list[dict[str, int]]:
    """The trades of one WebSocket message (one frame per trade, or a batch as a JSON array)."""
    frame = orjson.loads(message)
    return frame if isinstance(frame, list) else [frame]


@dataclass
class Window:
    """The measured interval: `warmup_s` after the first frame reached the client (the group
    join and the first fetches are not measured), for `duration_s`."""

    warmup_s: float
    duration_s: float
    first_frame_s: float | None = None
    max_wait_s: float = 60.0
    launched_s: float = 0.0  # when the first service was started (monotonic)

    def start(self, now_s: float) -> None:
        if self.first_frame_s is None:
            self.first_frame_s = now_s

    def measuring(self, now_s: float) -> bool:
        return self.first_frame_s is not None and now_s >= self.first_frame_s + self.warmup_s

    def over(self, now_s: float, started_s: float) -> bool:
        if self.first_frame_s is None:
            if now_s - started_s > self.max_wait_s:
                raise RuntimeError(f"no frame reached the client within {self.max_wait_s:g} s")
            return False
        return now_s >= self.first_frame_s + self.warmup_s + self.duration_s


COLD_START_S = 5.0  # the cold-start figure: frames in the first seconds after the launch


async def _listen_websocket(ws_url: str, window: Window) -> tuple[Any, Any, int, list[float], Any]:
    """Histograms of now - ingest_time_us and now - timestamp, and the worst latency (ms) of
    each second, so that a stall shows where it happened; and a histogram of now -
    ingest_time_us of the frames in the first COLD_START_S after the services were launched."""
    from_ingest, from_exchange = hist.new_histogram(), hist.new_histogram()
    cold = hist.new_histogram()
    frames = 0
    worst_ms_per_s: list[float] = []
    started_s = time.monotonic()
    async with connect(ws_url, compression=None, max_size=None, ping_interval=None) as ws:
        while not window.over(time.monotonic(), started_s):
            try:
                message = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                continue
            now_us, now_s = time.time_ns() // 1000, time.monotonic()
            window.start(now_s)
            if now_s < window.launched_s + COLD_START_S:
                for item in _items(message):
                    hist.record_us(cold, now_us - item["ingest_time_us"])
            if not window.measuring(now_s):
                continue
            second = int(now_s - (window.first_frame_s or now_s) - window.warmup_s)
            while len(worst_ms_per_s) <= second:
                worst_ms_per_s.append(0.0)
            for item in _items(message):
                latency_us = now_us - item["ingest_time_us"]
                hist.record_us(from_ingest, latency_us)
                hist.record_us(from_exchange, now_us - item["timestamp"] * 1000)
                worst_ms_per_s[second] = max(worst_ms_per_s[second], latency_us / 1000)
                frames += 1
    return from_ingest, from_exchange, frames, worst_ms_per_s, cold


async def _listen_redis(channel: str, window: Window) -> Any:
    from redis.asyncio import Redis

    from tickpipe.adapters.pubsub.frames import decode_updates

    from_ingest = hist.new_histogram()
    client = Redis.from_url(infra.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    started_s = time.monotonic()
    try:
        await pubsub.subscribe(channel)
        while not window.over(time.monotonic(), started_s):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            now_us = time.time_ns() // 1000
            if not window.measuring(time.monotonic()):
                continue
            for frame in decode_updates(message["data"]):
                hist.record_us(from_ingest, now_us - orjson.loads(frame.data)["ingest_time_us"])
    finally:
        await pubsub.aclose()
        await client.aclose()
    return from_ingest


def end_to_end_latency(
    processes: infra.Processes,
    env: infra.TickpipeEnv,
    *,
    rate_per_s: float,
    warmup_s: float,
    duration_s: float,
) -> Latency:
    """ingest (simulated, `rate_per_s`) -> Kafka -> process -> PostgreSQL + Redis -> gateway ->
    one WebSocket client, which measures now - ingest_time_us and now - timestamp; a Redis
    subscriber beside it measures now - ingest_time_us when the processor publishes."""
    # All three at once, as a deployment starts them: the first frame on a client is the
    # cold-start figure.
    launched_s = time.monotonic()
    metrics_port, gateway_port = infra.free_port(), infra.free_port()
    processor = processes.start(
        "process-latency",
        infra.tickpipe_argv("process"),
        env.environ(TICKPIPE_METRICS_PORT=str(metrics_port)),
    )
    gateway = processes.start(
        "gateway-latency",
        infra.tickpipe_argv("gateway"),
        env.environ(TICKPIPE_HTTP_PORT=str(gateway_port)),
    )
    rss_samples: list[tuple[float, float]] = []
    ingest_env = env.environ(
        TICKPIPE_SIM_RATE=str(rate_per_s),
        TICKPIPE_SIM_SEED=str(workload.SEED),
        TICKPIPE_SYMBOLS=",".join(workload.SYMBOLS),
        TICKPIPE_METRICS_PORT=str(infra.free_port()),
    )
    ingest = processes.start("ingest-latency", infra.tickpipe_argv("ingest"), ingest_env)
    infra.wait_http_ok(f"http://127.0.0.1:{gateway_port}/readyz", gateway)
    started_s = time.monotonic()
    window = Window(warmup_s, duration_s, launched_s=launched_s)

    async def measure() -> tuple[Any, Any]:
        async def sample_rss() -> None:
            while True:
                rss_kib = infra.proc_status_kib(processor.pid, "VmRSS")
                if rss_kib:
                    rss_samples.append((time.monotonic() - started_s, rss_kib / 1024))
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample_rss())
        try:
            return await asyncio.gather(
                _listen_websocket(f"ws://127.0.0.1:{gateway_port}/ws", window),
                _listen_redis(env.redis.channel, window),
            )
        finally:
            sampler.cancel()

    try:
        (from_ingest, from_exchange, frames, worst_ms_per_s, cold), to_redis = asyncio.run(
            measure()
        )
        processor_metrics = scrape_means(metrics_port)
    finally:
        processes.stop(ingest)
        processes.stop(gateway)
        processes.stop(processor)
    measured_from_s = (window.first_frame_s or started_s) + warmup_s - started_s
    return Latency(
        hist.percentiles_ms(from_ingest),
        hist.percentiles_ms(from_exchange),
        hist.percentiles_ms(to_redis),
        frames,
        [(t - measured_from_s, rss) for t, rss in rss_samples],
        processor_metrics,
        worst_ms_per_s,
        (window.first_frame_s or started_s) - launched_s,
        hist.percentiles_ms(cold),
    )


def new_group() -> str:
    return f"bench-{uuid.uuid4().hex[:8]}"


FULL_SPEED_SIM_RATE = 10_000_000  # trades/s asked of the simulated exchange: more than it makes


def metric_total(port: int, name: str) -> float:
    """The sum of every sample of a counter in a service's /metrics."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{"))
    )


@dataclass
class EndToEnd:
    trades_per_s: float  # rows stored, first to last, with the ingestor producing beside it
    ingested_per_s: float  # trades the ingestor accepted per second over the same interval
    ingest_cpu_us_per_trade: float  # its CPU (all threads) per trade accepted, same interval
    ingest_cpu_pct: float
    processor_cpu_pct: float
    broker_cpu_pct: float  # the Tansu broker's, over the same interval
    machine_busy_pct: float  # of all cores, whatever used them, over the same interval
    dropped: int  # trades the ingestor dropped (its local queue full for 5 s)
    progress: Progress


def end_to_end_throughput(
    processes: infra.Processes,
    env: infra.TickpipeEnv,
    count: int,
    *,
    timeout_s: float,
    rate_per_s: float = FULL_SPEED_SIM_RATE,
) -> EndToEnd:
    """`tickpipe ingest` (simulated exchange at `rate_per_s`, by default full speed) -> Kafka ->
    `tickpipe process` -> PostgreSQL + Redis, all on this machine: trades/s from the first row
    stored to `count` rows (polled like the processor's figure), and the ingestor's CPU per
    trade meanwhile."""
    processor, _ = start_processor(processes, env, "process-end-to-end")
    ingest_port = infra.free_port()
    ingest_env = env.environ(
        TICKPIPE_SIM_RATE=str(rate_per_s),
        TICKPIPE_SIM_SEED=str(workload.SEED),
        TICKPIPE_SYMBOLS=",".join(workload.SYMBOLS),
        TICKPIPE_METRICS_PORT=str(ingest_port),
    )
    ingest = processes.start("ingest-end-to-end", infra.tickpipe_argv("ingest"), ingest_env)
    try:
        infra.wait_http_ok(f"http://127.0.0.1:{ingest_port}/healthz", ingest)
        # wall, ingest CPU, ingested, processor CPU, broker CPU, machine busy and all CPU
        first: list[tuple[float, float, float, float, float, tuple[float, float]]] = []
        broker_pid = processes.broker_pid

        def ingest_now() -> tuple[float, float, float, float, float, tuple[float, float]]:
            return (
                time.monotonic(),
                infra.cpu_seconds(ingest.pid),
                metric_total(ingest_port, "tickpipe_trades_ingested_total"),
                infra.cpu_seconds(processor.pid),
                infra.cpu_seconds(broker_pid) if broker_pid is not None else 0.0,
                infra.machine_cpu_seconds(),
            )

        with stored_so_far(env.database_url) as stored:

            def counted() -> int:
                done = stored()
                if done and not first:
                    first.append(ingest_now())
                return done

            progress = watch(counted, count, processor, timeout_s)
        last = ingest_now()
        dropped = int(metric_total(ingest_port, "tickpipe_producer_dropped_total"))
    finally:
        processes.stop(ingest)
        processes.stop(processor)
    wall_s = last[0] - first[0][0]
    ingested = last[2] - first[0][2]
    ingest_cpu_s = last[1] - first[0][1]
    return EndToEnd(
        progress.rate_per_s(),
        ingested / wall_s,
        1e6 * ingest_cpu_s / ingested if ingested else 0.0,
        100 * ingest_cpu_s / wall_s,
        100 * (last[3] - first[0][3]) / wall_s,
        100 * (last[4] - first[0][4]) / wall_s,
        100 * (last[5][0] - first[0][5][0]) / (last[5][1] - first[0][5][1]),
        dropped,
        progress,
    )
