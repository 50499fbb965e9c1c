"""Live fan-out: one subscription to the update feed, many WebSocket clients.

Each frame is serialized once (by the processor) and decoded to text once here; every client
gets the same string object through its own queue. A client still `client_queue_frames` frames
behind when the next update arrives is disconnected with close code 1013 and a reason: it never
slows the others or the feed. (A client that keeps up takes a burst of any size: one batch after
an outage may be thousands of frames. A client's queue holds at most the bound plus one batch.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

from starlette.websockets import WebSocket, WebSocketDisconnect

from tickpipe.backoff import Backoff
from tickpipe.ports import UpdateFeed
from tickpipe.telemetry import metrics, tracing
from tickpipe.telemetry.logs import fields

log = logging.getLogger(__name__)

CLIENT_QUEUE_FRAMES = 10_000
TOO_SLOW_CLOSE_CODE = 1013  # "try again later": the client could not keep up
CLOSE_TIMEOUT_S = 1.0


class Client:
    __slots__ = ("overflowed", "queue", "symbols")

    def __init__(self, symbols: Collection[str] | None) -> None:
        self.symbols = frozenset(symbols) if symbols else None
        self.queue: asyncio.Queue[str] = asyncio.Queue()  # bounded by _fan_out
        self.overflowed = asyncio.Event()


class Broadcaster:
    def __init__(self, feed: UpdateFeed, *, client_queue_frames: int = CLIENT_QUEUE_FRAMES) -> None:
        self._feed = feed
        self._clients: set[Client] = set()
        self._client_queue_frames = client_queue_frames
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="gateway-broadcast")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pump(self) -> None:
        backoff = Backoff(initial_s=0.1, max_s=5.0)
        attempt = 0
        while True:
            try:
                async for frames in self._feed.frames():
                    attempt = 0
                    if not self._clients:
                        continue  # nobody to send to: the frames need not even be decoded
                    with tracing.span("broadcast", frames=len(frames), clients=len(self._clients)):
                        self._fan_out([(frame.symbol, frame.data.decode()) for frame in frames])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the feed is re-subscribed, never fatal
                log.warning(
                    "update feed failed, re-subscribing: %s",
                    exc,
                    extra=fields("feed_failed", error=str(exc), attempt=attempt),
                )
                metrics.feed_resubscribes.inc()
                await asyncio.sleep(backoff.delay_s(attempt))
                attempt += 1

    def _fan_out(self, frames: list[tuple[str, str]]) -> None:
        for client in self._clients:
            if client.overflowed.is_set():
                continue
            queue, wanted = client.queue, client.symbols
            if queue.qsize() >= self._client_queue_frames:
                client.overflowed.set()
                continue
            for symbol, text in frames:
                if wanted is None or symbol in wanted:
                    queue.put_nowait(text)

    async def serve(self, websocket: WebSocket, symbols: Collection[str] | None) -> None:
        """Streams frames to one client until it disconnects or falls too far behind."""
        await websocket.accept()
        client = Client(symbols)
        self._clients.add(client)
        metrics.websocket_clients.inc()
        tasks = {
            asyncio.create_task(_drain_incoming(websocket)),
            asyncio.create_task(_send_frames(websocket, client.queue)),
            asyncio.create_task(client.overflowed.wait()),
        }
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            self._clients.discard(client)
            metrics.websocket_clients.dec()
        if client.overflowed.is_set():
            metrics.websocket_dropped.labels("too_slow").inc()
            log.info(
                "disconnecting a WebSocket client that fell %d or more frames behind",
                self._client_queue_frames,
                extra=fields(
                    "websocket_dropped", reason="too_slow", frames_behind=self._client_queue_frames
                ),
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    websocket.close(
                        TOO_SLOW_CLOSE_CODE, "client too slow: update queue overflowed"
                    ),
                    CLOSE_TIMEOUT_S,
                )


async def _send_frames(websocket: WebSocket, queue: asyncio.Queue[str]) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        while True:
            await websocket.send_text(await queue.get())
            metrics.websocket_frames_sent.inc()


async def _drain_incoming(websocket: WebSocket) -> None:
    """Reads (and ignores) what the client sends, so its disconnect is noticed promptly."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
