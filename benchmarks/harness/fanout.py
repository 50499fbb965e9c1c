"""WebSocket fan-out to 100 local clients: the bare `websockets` broadcast ceiling and the
gateway's figure (updates published to its Redis channel, received by the same client pool)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass

import orjson

from benchmarks.harness import infra, workload
from tickpipe.adapters.pubsub.frames import encode_updates

PUBLISH_TICK_S = 0.01  # the publisher sends what is due every 10 ms, one message per tick
IDLE_END_S = 3.0


@dataclass(frozen=True, slots=True)
class FanOut:
    deliveries: int
    deliveries_per_s: float
    dropped: int  # trades published x clients - trades received
    disconnected: int  # clients the server closed (e.g. 1013, too slow)

    def as_dict(self) -> dict[str, float]:
        return {
            "deliveries": self.deliveries,
            "deliveries_per_s": self.deliveries_per_s,
            "dropped": self.dropped,
            "disconnected": self.disconnected,
        }


def _start_clients(
    processes: infra.Processes, name: str, url: str, clients: int
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "benchmarks.harness.ws_clients", url]
    argv += ["--clients", str(clients), "--idle-s", str(IDLE_END_S)]
    pool = processes.start(name, argv, stdout_pipe=True)
    if infra.read_line(pool, 60) != "READY":
        raise RuntimeError("the WebSocket client pool did not connect")
    return pool


def _result(pool: subprocess.Popen[bytes], expected: int, timeout_s: float) -> FanOut:
    result = orjson.loads(infra.read_line(pool, timeout_s))
    pool.wait(10)
    span_s = max((result["last_ns"] - result["first_ns"]) / 1e9, 1e-9)
    return FanOut(
        deliveries=result["deliveries"],
        deliveries_per_s=result["deliveries"] / span_s,
        dropped=max(0, expected - result["deliveries"]),
        disconnected=sum(result["closes"].values()),
    )


def broadcast_ceiling(processes: infra.Processes, clients: int, updates: int) -> FanOut:
    """Deliveries/s of `websockets.broadcast` from a bare server to the client pool."""
    port = infra.free_port()
    argv = [sys.executable, "-m", "benchmarks.harness.ws_broadcast", str(port)]
    argv += ["--clients", str(clients), "--updates", str(updates)]
    server = processes.start("ws-broadcast", argv, stdout_pipe=True)
    try:
        if infra.read_line(server, 60) != "LISTENING":
            raise RuntimeError("the broadcast server did not start")
        pool = _start_clients(processes, "ws-clients-ceiling", f"ws://127.0.0.1:{port}", clients)
        return _result(pool, updates * clients, timeout_s=300)
    finally:
        processes.stop(server)


async def _publish(channel: str, updates: int, rate_per_s: float) -> None:
    from redis.asyncio import Redis

    batch = workload.scored(updates)
    client = Redis.from_url(infra.REDIS_URL)
    try:
        started_s = time.monotonic()
        sent = 0
        while sent < updates:
            due = min(updates, int((time.monotonic() - started_s) * rate_per_s) + 1) - sent
            if due > 0:
                await client.publish(channel, encode_updates(batch[sent : sent + due]))
                sent += due
            next_due_s = started_s + sent / rate_per_s
            await asyncio.sleep(max(0.0, min(PUBLISH_TICK_S, next_due_s - time.monotonic())))
    finally:
        await client.aclose()


def gateway_fan_out(
    processes: infra.Processes,
    ws_url: str,
    channel: str,
    *,
    clients: int,
    updates: int,
    rate_per_s: float,
) -> FanOut:
    """Publishes `updates` trades (tickpipe's Redis message format) to the gateway's channel at
    `rate_per_s`; the client pool on the gateway's `/ws` counts what arrives."""
    pool = _start_clients(processes, "ws-clients-gateway", ws_url, clients)
    time.sleep(0.5)  # every connection is registered with the broadcaster
    asyncio.run(_publish(channel, updates, rate_per_s))
    return _result(pool, updates * clients, timeout_s=300)
