"""Shared by the fault scenarios: environments for the real processes, and the audits of what they
stored (exactly once, with the SMA an uninterrupted run gives), what they cost (peak memory) and
how long they took to recover. Every scenario prints one `FAULT <name> key=value ...` line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from fixtures.fault_proxy import FaultProxy
from fixtures.kafka import _TANSU_ENV, _wait_until_ready, tansu_binary
from fixtures.procs import Tickpipe, free_port
from fixtures.waiting import wait_until
from tickpipe.adapters.bus.wire import WireError, decode_trade
from tickpipe.adapters.exchanges.simulated import SimulatedMarket
from tickpipe.core.rolling import RollingMean
from tickpipe.core.signal import signal_from_comparison

SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"
SEED = 5
WINDOW = 5


def pipeline_env(
    database_url: str,
    bootstrap: str,
    topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    **extra: str,
) -> dict[str, str]:
    """The variables every service of one scenario shares; `extra` adds or overrides some."""
    channel, prefix = redis_names
    env = {
        "TICKPIPE_DATABASE_URL": database_url,
        "TICKPIPE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TICKPIPE_KAFKA_TOPIC": topic,
        "TICKPIPE_KAFKA_GROUP": f"group-{topic}",
        "TICKPIPE_REDIS_URL": redis_url,
        "TICKPIPE_REDIS_CHANNEL": channel,
        "TICKPIPE_REDIS_PREFIX": prefix,
        "TICKPIPE_SYMBOLS": SYMBOLS,
        "TICKPIPE_SIM_SEED": str(SEED),
        "TICKPIPE_SIM_RATE": "200",
        "TICKPIPE_SMA_WINDOW": str(WINDOW),
        "TICKPIPE_BATCH_MAX_TRADES": "500",
    }
    env.update(extra)
    return env


_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379}


def proxy_for(url: str) -> FaultProxy:
    """A (not yet started) fault proxy in front of the server that `url` names."""
    parts = urlsplit(url)
    return FaultProxy(parts.hostname or "127.0.0.1", parts.port or _DEFAULT_PORTS[parts.scheme])


def via(url: str, proxy: FaultProxy) -> str:
    """`url` (postgresql:// or redis://) pointed at the proxy instead of the real port."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = parts.netloc[: len(parts.netloc) - len(host)] + proxy.address
    return urlunsplit(parts._replace(netloc=netloc))


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickpipe", "migrate"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# --- what the database holds ---


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    db = await asyncpg.connect(url, timeout=5)
    try:
        return await db.fetch(query)
    finally:
        await db.close()


def stored_rows(url: str) -> list[asyncpg.Record]:
    """Every stored trade in processing order (id)."""
    query = "SELECT id, exchange, symbol, trade_id, price, sma, signal FROM trades ORDER BY id"
    return asyncio.run(_fetch(url, query))


def stored_count(url: str) -> int:
    return int(asyncio.run(_fetch(url, "SELECT count(*) AS n FROM trades"))[0]["n"])


def stored_streams(url: str) -> int:
    """How many (exchange, symbol) streams have at least one trade stored."""
    query = "SELECT count(*) AS n FROM (SELECT DISTINCT exchange, symbol FROM trades) AS streams"
    return int(asyncio.run(_fetch(url, query))[0]["n"])


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.2) -> float:
    """Polls `check` until true; returns the seconds it took, fails after `timeout_s`."""
    return wait_until(check, timeout_s, what, poll_s)


def wait_for_count(url: str, expected: int, timeout_s: float) -> float:
    """Waits until exactly `expected` rows are stored (and no more arrive for a moment)."""
    seconds = wait_for(lambda: stored_count(url) >= expected, timeout_s, f"{expected} rows")
    time.sleep(1.0)
    return seconds


@dataclass(frozen=True, slots=True)
class Audit:
    stored: int
    distinct: int
    duplicates: int
    missing: int
    sma_mismatches: int

    def numbers(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "sma_mismatches": self.sma_mismatches,
        }


def audit(rows: Sequence[asyncpg.Record], seeded: bool = True) -> Audit:
    """Exactly once and uninterrupted-run SMAs, from the stored rows alone.

    Simulated ids of one ingest run count up by one per symbol from the run's first id (its start
    time in microseconds), so a gap inside a run is a lost trade. The reference SMA/signal of each
    trade is recomputed from the stored prices in trade-id order (= the order the market made
    them); with `seeded`, each run's prices are also checked against the seeded market, so the
    reference is that of an uninterrupted run.
    """
    by_symbol: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_symbol[row["symbol"]].append(row)
    keys = {(row["exchange"], row["symbol"], row["trade_id"]) for row in rows}
    missing = mismatches = 0
    for symbol_rows in by_symbol.values():
        for run_ids in _runs(sorted({int(row["trade_id"]) for row in symbol_rows})):
            missing += run_ids[-1] - run_ids[0] + 1 - len(run_ids)
        window = RollingMean(WINDOW)
        seen: set[str] = set()
        for row in sorted(symbol_rows, key=lambda r: int(r["trade_id"])):
            if row["trade_id"] in seen:
                continue
            seen.add(row["trade_id"])
            price = Decimal(row["price"])
            sma = window.push(price)
            signal = signal_from_comparison(window.compare(price))
            same_sma = (sma is None and row["sma"] is None) or (
                sma is not None
                and row["sma"] is not None
                and abs(row["sma"] - float(sma)) <= 1e-12 * abs(float(sma))
            )
            if not same_sma or row["signal"] != signal.value:
                mismatches += 1
    if seeded:
        mismatches += _unseeded_prices(rows)
    return Audit(len(rows), len(keys), len(rows) - len(keys), missing, mismatches)


_RUN_GAP_IDS = 1_000_000  # ids of two ingest runs are their start times in us, >= 1 s apart


def _runs(ids: list[int]) -> list[list[int]]:
    """Sorted ids split into ingest runs."""
    runs: list[list[int]] = []
    for trade_id in ids:
        if runs and trade_id - runs[-1][-1] < _RUN_GAP_IDS:
            runs[-1].append(trade_id)
        else:
            runs.append([trade_id])
    return runs


def _unseeded_prices(rows: Sequence[asyncpg.Record]) -> int:
    """Rows whose price differs from what the seeded market generated for that trade."""
    all_ids = sorted({int(row["trade_id"]) for row in rows})
    expected: dict[tuple[str, str], Decimal] = {}
    for run_ids in _runs(all_ids):
        market = SimulatedMarket(SYMBOLS.split(","), 1.0, SEED, run_ids[0])
        wanted = {
            row["symbol"]: int(row["trade_id"])
            for row in sorted(rows, key=lambda r: int(r["trade_id"]))
            if run_ids[0] <= int(row["trade_id"]) <= run_ids[-1]
        }
        reached = dict.fromkeys(wanted, run_ids[0] - 1)
        while any(reached[symbol] < last for symbol, last in wanted.items()):
            trade = market.next_trade(0)
            expected[(trade.symbol, trade.trade_id)] = trade.price
            if trade.symbol in reached:
                reached[trade.symbol] = int(trade.trade_id)
    return sum(1 for row in rows if expected.get((row["symbol"], row["trade_id"])) != row["price"])


# --- the broker ---


def topic_messages(bootstrap: str, topic: str, idle_s: float = 2.0) -> int:
    """How many messages the topic holds, by reading it all (Tansu's watermarks are not exact)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tickpipe-test-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        count, idle_since_s = 0, time.monotonic()
        while time.monotonic() - idle_since_s < idle_s:
            messages = consumer.consume(10_000, 0.2)
            if messages:
                count += sum(1 for m in messages if m.error() is None)
                idle_since_s = time.monotonic()
        return count
    finally:
        consumer.close()


class CommittedOffsets:
    """Reads how many messages of the topic a consumer group has committed (offsets start at
    0, one per message), through one reused client."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._partitions = [TopicPartition(topic, p) for p in partitions]

    def __call__(self) -> int:
        return sum(self.per_partition().values())

    def per_partition(self) -> dict[int, int]:
        """Partition -> committed offset: the first message the group has not handled yet."""
        offsets = self._consumer.committed(self._partitions, timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in offsets}

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> CommittedOffsets:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


TradeKey = tuple[str, str, str]  # (exchange, symbol, trade_id): one trade, wherever it is


@dataclass(frozen=True, slots=True)
class BusRecord:
    """One message of the topic; `trade` is None for one that is not a valid trade (the
    processor dead-letters those)."""

    partition: int
    offset: int
    timestamp_ms: int
    trade: TradeKey | None


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    ends: Mapping[int, int] | None = None,
    until_s: float | None = None,
    idle_s: float = 1.0,
    timeout_s: float = 30.0,
) -> list[BusRecord]:
    """The topic's messages from the start of every partition, with a plain consumer (no group
    offsets). With `ends` (partition -> offset), those below `ends[p]`, all of them (fails after
    `timeout_s` otherwise). With `until_s` (a `time.time()`), those produced up to that moment:
    a partition ends at its first later message, or when it had none for `idle_s`."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tickpipe-test-reader",
            "enable.auto.commit": False,
        }
    )
    records: list[BusRecord] = []
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        limits = dict(ends) if ends is not None else {}
        done = {p for p in partitions if ends is not None and limits.get(p, 0) <= 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        started_s = idle_since_s = time.monotonic()
        until_ms = None if until_s is None else int(until_s * 1000)
        while len(done) < len(partitions):
            if time.monotonic() - started_s > timeout_s:
                raise AssertionError(f"{topic}: partitions {set(partitions) - done} not read")
            if ends is None and time.monotonic() - idle_since_s > idle_s:
                break  # the partitions still open had nothing (more) to read
            for message in consumer.consume(10_000, 0.2):
                partition, offset = message.partition(), message.offset()
                if message.error() is not None or partition in done:
                    continue
                assert partition is not None
                assert offset is not None
                idle_since_s = time.monotonic()
                timestamp_ms = message.timestamp()[1]
                if (ends is not None and offset >= limits[partition]) or (
                    until_ms is not None and timestamp_ms > until_ms
                ):
                    done.add(partition)
                    continue
                records.append(BusRecord(partition, offset, timestamp_ms, _trade_key(message)))
                if ends is not None and offset >= limits[partition] - 1:
                    done.add(partition)
        return records
    finally:
        consumer.close()


def _trade_key(message: Message) -> TradeKey | None:
    try:
        trade = decode_trade(message.value() or b"")
    except WireError:
        return None
    return (trade.exchange, trade.symbol, trade.trade_id)


def stored_keys(url: str) -> set[TradeKey]:
    rows = asyncio.run(_fetch(url, "SELECT exchange, symbol, trade_id FROM trades"))
    return {(row["exchange"], row["symbol"], row["trade_id"]) for row in rows}


@dataclass(frozen=True, slots=True)
class OffsetCheck:
    """What a group's committed offsets cover, against what the store holds."""

    committed: dict[int, int]
    covered: int  # trades below the committed offsets
    unstored: list[BusRecord]  # ... of which the store does not hold: lost for good


def check_committed_offsets(offsets: CommittedOffsets, database_url: str) -> OffsetCheck:
    """The rule that exactly-once rests on: no committed offset covers a trade that is not
    stored (every message below the group's committed offset of its partition is in the store;
    messages that are not trades are left out: the processor dead-letters them). Reads the
    offsets first and the store second, so it holds while processors run (each stores before it
    commits)."""
    committed = offsets.per_partition()
    stored = stored_keys(database_url)
    records = read_topic(offsets.bootstrap, offsets.topic, ends=committed)
    trades = [record for record in records if record.trade is not None]
    unstored = [record for record in trades if record.trade not in stored]
    return OffsetCheck(committed, len(trades), unstored)


def trades_produced_until(bootstrap: str, topic: str, moment_s: float) -> set[TradeKey]:
    """The trades the topic received up to `moment_s` (a `time.time()`): a backlog to store."""
    records = read_topic(bootstrap, topic, until_s=moment_s)
    return {record.trade for record in records if record.trade is not None}


def seconds_until_stored(url: str, trades: set[TradeKey], timeout_s: float) -> float | None:
    """Waits until every one of `trades` is stored; the seconds it took, None if they were not
    all stored within `timeout_s` (lost ones never will: the caller reports, then fails)."""
    try:
        return wait_for(lambda: trades <= stored_keys(url), timeout_s, "stored", poll_s=0.5)
    except AssertionError:
        return None


@contextlib.contextmanager
def proxied_broker(log_path: Path) -> Iterator[FaultProxy]:
    """A Tansu broker of its own whose advertised address is a FaultProxy in front of it, so that
    every client's traffic (metadata says where to connect) goes through the proxy. Its storage
    is in memory: restarting it would lose the topic, so outages are proxy cuts."""
    broker_port = free_port()
    with FaultProxy("127.0.0.1", broker_port) as proxy, log_path.open("wb") as log:
        env = {name: value for name, value in os.environ.items() if name not in _TANSU_ENV}
        process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{broker_port}",
                "--advertised-listener-url",
                f"tcp://{proxy.address}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            _wait_until_ready(process, proxy.address, log_path)
            yield proxy
        finally:
            process.kill()
            process.wait()


# --- the processes ---


@dataclass(frozen=True, slots=True)
class Exit:
    code: int | None  # None: still running after the wait, so it was killed (-9)
    seconds: float  # from SIGTERM until it was gone


def sigterm_and_wait(
    proc: Tickpipe,
    actions: Sequence[tuple[float, Callable[[], None]]] = (),
    kill_after_s: float = 30.0,
) -> Exit:
    """SIGTERM, then waits for the process to exit (kill -9 after `kill_after_s`); meanwhile runs
    each action that many seconds after the SIGTERM, if the process is still running then."""
    started_s = time.monotonic()
    proc.process.send_signal(signal.SIGTERM)
    pending = sorted(actions, key=lambda action: action[0])
    while (code := proc.process.poll()) is None:
        elapsed_s = time.monotonic() - started_s
        while pending and pending[0][0] <= elapsed_s:
            pending.pop(0)[1]()
        if elapsed_s > kill_after_s:
            proc.kill()
            return Exit(None, elapsed_s)
        time.sleep(0.02)
    seconds = time.monotonic() - started_s
    proc.kill()  # gone already: closes its log
    return Exit(code, seconds)


def memory_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak resident) and VmRSS (resident now) of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry `labels` (0 when absent)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        sample_name, _, sample_labels = sample.partition("{")
        if sample_name != name:
            continue
        if all(f'{key}="{val}"' in sample_labels for key, val in labels.items()):
            total += float(value)
    return total


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    return answer.status_code, answer.json()


_ACCEPTED = re.compile(r"ingestor stopped: (\d+) trades accepted")
_DROPPED = re.compile(r"(\d+) trades dropped in total")


def ingest_totals(log: str) -> tuple[int, int]:
    """(accepted, dropped) from the summary lines an ingest process logs when it stops."""
    accepted = sum(int(n) for n in _ACCEPTED.findall(log))
    dropped = sum(int(n) for n in _DROPPED.findall(log))
    return accepted, dropped


def report(scenario: str, **numbers: object) -> None:
    """One line per scenario with the numbers observed (shown with `pytest -s` or -rA)."""
    text = " ".join(
        f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in numbers.items()
    )
    print(f"\nFAULT {scenario} {text}", flush=True)


# --- a WebSocket client on its own thread ---


class WsRecorder:
    """A WebSocket client that records every frame (with its arrival time) on a thread of its
    own, so sync tests can cut, restore and look: `frames`, `closed_code`, `closed_reason`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.connected = threading.Event()
        self.closed_code: int | None = None
        self.closed_reason = ""
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="ws-recorder")

    def __enter__(self) -> WsRecorder:
        self._thread.start()
        if not self.connected.wait(10):
            raise AssertionError(f"no WebSocket connection to {self.url}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None and not self._task.done():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to stop
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    def frames_after(self, moment_s: float) -> list[dict[str, Any]]:
        return [frame for arrived_s, frame in list(self.frames) if arrived_s >= moment_s]

    def first_arrival_after(self, moment_s: float) -> float | None:
        arrivals = [arrived_s for arrived_s, _ in list(self.frames) if arrived_s >= moment_s]
        return min(arrivals) if arrivals else None

    def _run(self) -> None:
        self._task = self._loop.create_task(self._receive())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    async def _receive(self) -> None:
        async with ws_connect(self.url, open_timeout=10) as ws:
            self.connected.set()
            try:
                async for message in ws:
                    self.frames.append((time.monotonic(), orjson.loads(message)))
            except ConnectionClosed:
                pass
            self.closed_code = ws.close_code
            self.closed_reason = ws.close_reason or ""
