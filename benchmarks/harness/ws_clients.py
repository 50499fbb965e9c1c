"""A pool of WebSocket clients in their own process, counting the trades they receive.

    python -m benchmarks.harness.ws_clients URL --clients 100 [--idle-s 3] [--max-s 120]

Prints `READY` once every client is connected, then, once the frames stop (no frame for
`idle-s` after the first one) or after `max-s`, one JSON line: deliveries (trades received over
all clients; a batched frame counts each of its trades), the first and last receive times and
the close codes the server sent.

The clients are minimal RFC 6455 clients on asyncio protocols (no extensions, so no
permessage-deflate): a full client library costs more CPU per frame than the servers under
test, and on a 2-core machine the clients would then set the pace of both measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import orjson

TRADE_MARK = b'"trade_id"'
_OPCODE_CLOSE, _OPCODE_PING = 0x8, 0x9
READ_PAUSE_S = float(os.environ.get("BENCH_WS_READ_PAUSE_S", "0.002"))


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask); control payloads are < 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


class Clock:
    """First and last frame receive times over the whole pool (monotonic ns)."""

    first_ns = 0
    last_ns = 0


class CountingClient(asyncio.Protocol):
    """One WebSocket connection that counts the trades in its data frames."""

    def __init__(self, host: str, path: str, clock: Clock) -> None:
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n"
        ).encode()
        self._clock = clock
        self._buffer = bytearray()
        self._upgraded = False
        self._transport: asyncio.Transport | None = None
        self.open = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.deliveries = 0
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(ConnectionError(bytes(buffer[:end]).decode()))
                assert self._transport is not None
                self._transport.close()
                return
            del buffer[: end + 4]
            self._upgraded = True
            self.open.set_result(None)
        self._parse(buffer)
        if READ_PAUSE_S:
            # Reading a socket at every few bytes costs more in system calls than the frames'
            # handling: a short pause lets each read take what has arrived meanwhile.
            assert self._transport is not None
            self._transport.pause_reading()
            asyncio.get_running_loop().call_later(READ_PAUSE_S, self._resume)

    def _resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _parse(self, buffer: bytearray) -> None:
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            length, head = buffer[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 4]), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 10]), 10
            end = pos + head + length
            if end > size:
                break
            opcode = buffer[pos] & 0x0F
            if opcode < 0x8:
                self.deliveries += buffer.count(TRADE_MARK, pos + head, end)
                now_ns = time.monotonic_ns()
                if not self._clock.first_ns:
                    self._clock.first_ns = now_ns
                self._clock.last_ns = now_ns
            elif opcode == _OPCODE_PING:
                self._send(0xA, bytes(buffer[pos + head : end]))
            elif opcode == _OPCODE_CLOSE:
                if length >= 2:
                    self.close_code = int.from_bytes(buffer[pos + head : pos + head + 2])
                self._send(_OPCODE_CLOSE, bytes(buffer[pos + head : pos + head + 2]))
            pos = end
        del buffer[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_masked_frame(opcode, payload))

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._send(_OPCODE_CLOSE, (1000).to_bytes(2))
            self._transport.close()


async def run_pool(url: str, clients: int, idle_s: float, max_s: float) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    clock = Clock()
    pool: list[CountingClient] = []
    for _ in range(clients):
        _, client = await loop.create_connection(
            lambda: CountingClient(f"{host}:{port}", path, clock), host, port
        )
        await asyncio.wait_for(client.open, 30)
        pool.append(client)
    print("READY", flush=True)
    started_ns = time.monotonic_ns()
    while True:
        await asyncio.sleep(0.05)
        now_ns = time.monotonic_ns()
        if clock.last_ns and now_ns - clock.last_ns > idle_s * 1e9:
            break
        if now_ns - started_ns > max_s * 1e9 or all(c.closed.done() for c in pool):
            break
    for client in pool:
        client.close()
    closes = Counter(c.close_code for c in pool if c.close_code not in (None, 1000))
    deliveries = [c.deliveries for c in pool]
    result = {
        "clients": clients,
        "deliveries": sum(deliveries),
        "min_client_deliveries": min(deliveries),
        "max_client_deliveries": max(deliveries),
        "first_ns": clock.first_ns,
        "last_ns": clock.last_ns,
        "closes": {str(code): count for code, count in closes.items()},
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--idle-s", type=float, default=3.0)
    parser.add_argument("--max-s", type=float, default=120.0)
    args = parser.parse_args()
    asyncio.run(run_pool(args.url, args.clients, args.idle_s, args.max_s))


if __name__ == "__main__":
    main()
