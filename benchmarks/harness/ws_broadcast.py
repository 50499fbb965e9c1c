"""The WebSocket ceiling: a bare `websockets` server broadcasting trade frames to its clients.

    python -m benchmarks.harness.ws_broadcast PORT --clients 100 --updates 10000

Prints `LISTENING`, waits for `clients` connections, then broadcasts `updates` distinct trade
frames (tickpipe's frame JSON) with `websockets.broadcast`, as fast as the slowest client's write
buffer allows, and closes every connection once its buffer has drained. The pace is set by the
transports' flow control (drain waits for `resume_writing`), never by a timer.
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve

from benchmarks.harness import workload
from tickpipe.adapters.pubsub.frames import update_frame

HIGH_WATER_BYTES = 256 * 1024  # waits for the clients above this much unsent data


async def _drain(connections: set[ServerConnection]) -> None:
    """Returns once no connection holds more than its high-water mark of unsent data."""
    paused = [c for c in connections if c.paused]
    if paused:
        await asyncio.gather(*(c.drain() for c in paused), return_exceptions=True)


async def run_server(port: int, clients: int, updates: int) -> None:
    texts = [update_frame(s).decode() for s in workload.scored(updates)]
    connected: set[ServerConnection] = set()
    all_connected = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        connected.add(connection)
        if len(connected) >= clients:
            all_connected.set()
        await connection.wait_closed()

    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,
        ping_interval=None,
        write_limit=HIGH_WATER_BYTES,
    ):
        print("LISTENING", flush=True)
        await all_connected.wait()
        for text in texts:
            broadcast(connected, text)
            await _drain(connected)
        for connection in connected:  # now wait until every buffer is empty
            connection.transport.set_write_buffer_limits(high=0)
        await _drain(connected)
        await asyncio.sleep(0.5)
        await asyncio.gather(*(c.close() for c in connected), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--updates", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(run_server(args.port, args.clients, args.updates))


if __name__ == "__main__":
    main()
