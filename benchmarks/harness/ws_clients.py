"""A pool of WebSocket clients in their own process, counting the trades they receive.

    python -m benchmarks.harness.ws_clients URL --clients 100 [--idle-s 3] [--max-s 120]

Prints `READY` once every client is connected, then, once the frames stop (no frame for
`idle-s` after the first one) or after `max-s`, one JSON line: deliveries (trades received over
all clients, a batched frame counts each of its trades), the first and last receive times and
the close codes of connections the server closed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

_TRADE_MARK = '"trade_id"'


async def run_pool(url: str, clients: int, idle_s: float, max_s: float, compression: str) -> None:
    connections = [
        await connect(
            url,
            compression=None if compression == "none" else "deflate",
            max_size=None,
            ping_interval=None,
            open_timeout=30,
        )
        for _ in range(clients)
    ]
    deliveries = [0] * clients
    closes: Counter[int] = Counter()
    times_ns = [0, 0]  # first, last receive

    async def read(index: int) -> None:
        connection = connections[index]
        try:
            async for message in connection:
                now_ns = time.monotonic_ns()
                if not times_ns[0]:
                    times_ns[0] = now_ns
                times_ns[1] = now_ns
                text = message if isinstance(message, str) else message.decode()
                deliveries[index] += text.count(_TRADE_MARK)
        except ConnectionClosed:
            pass
        if connection.close_code is not None and connection.close_code != 1000:
            closes[connection.close_code] += 1

    readers = [asyncio.create_task(read(i)) for i in range(clients)]
    print("READY", flush=True)
    started_ns = time.monotonic_ns()
    while True:
        await asyncio.sleep(0.05)
        now_ns = time.monotonic_ns()
        if times_ns[1] and now_ns - times_ns[1] > idle_s * 1e9:
            break
        if now_ns - started_ns > max_s * 1e9 or all(r.done() for r in readers):
            break
    for connection in connections:
        await connection.close()
    await asyncio.gather(*readers, return_exceptions=True)
    result = {
        "clients": clients,
        "deliveries": sum(deliveries),
        "min_client_deliveries": min(deliveries),
        "max_client_deliveries": max(deliveries),
        "first_ns": times_ns[0],
        "last_ns": times_ns[1],
        "closes": {str(code): count for code, count in closes.items()},
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--idle-s", type=float, default=3.0)
    parser.add_argument("--max-s", type=float, default=120.0)
    parser.add_argument("--compression", choices=("none", "deflate"), default="none")
    args = parser.parse_args()
    asyncio.run(run_pool(args.url, args.clients, args.idle_s, args.max_s, args.compression))


if __name__ == "__main__":
    main()
