"""Running a service: signals, an optional HTTP server, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from tickpipe.telemetry.logs import fields

log = logging.getLogger(__name__)

# The hot paths allocate thousands of acyclic objects per batch (trades, rows, frames): the
# default gen-0 threshold (700) runs the cycle collector every few hundred trades, a quarter
# of the processor's CPU. Cycles are rare here, so collect far less often.
GC_THRESHOLDS = (50_000, 20, 50)
SHUTDOWN_GRACE_S = 8.0  # the contract's SIGTERM budget is 10 s
# Limits of every HTTP server (README "Security"); uvicorn answers 503 past max_connections.
DEFAULT_MAX_CONNECTIONS = 1_500  # open connections (WebSockets included) and requests at once
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this
MAX_HEADER_BYTES = 16 * 1024  # request line + headers (h11); larger: 400 / connection closed
WS_MAX_MESSAGE_BYTES = 16 * 1024  # clients only subscribe: nothing they send needs more
WS_MAX_QUEUE = 4  # incoming WebSocket messages buffered per connection


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def http_server(
    app: ASGIApp, host: str, port: int, *, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> HttpServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http="h11",  # h11 enforces MAX_HEADER_BYTES (httptools, if installed, would not)
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default; the gateway reads
        # it itself, only from TICKPIPE_TRUSTED_PROXIES (services/gateway/admission.py).
        proxy_headers=False,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        limit_concurrency=max_connections,
        timeout_keep_alive=KEEP_ALIVE_S,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        ws_max_queue=WS_MAX_QUEUE,
        ws_ping_interval=20.0,  # a vanished client is noticed (and its slot freed) in <= 40 s
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=2,
    )
    return HttpServer(config)


@dataclass
class Worker:
    """A long-running part of a service, stopped by setting its `stop` event."""

    name: str
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class ServiceFailed(RuntimeError):
    """A worker ended with an error; the message is the one line the CLI prints."""


# How long a thread holding the GIL runs before one waiting for it gets its turn (Python: 5 ms).
# The SQLite writer and the Kafka consumer's thread hand the GIL back to the event loop at every
# statement or poll; at 5 ms the SQLite writer waited ~5 ms a batch for it, at 1 ms ~1 ms.
SWITCH_INTERVAL_S = 0.001


def tune_interpreter() -> None:
    """Moves what start-up allocated (modules, settings) out of the collector's sight, raises
    the collection thresholds (see GC_THRESHOLDS) and shortens the GIL's switch interval."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


async def run_service(
    workers: Sequence[Worker],
    server: HttpServer | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Runs the workers (and the HTTP server) until SIGINT/SIGTERM or a worker fails; then stops
    the workers one after the other in the given order (upstream first), then the server."""
    tune_interpreter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server_task = asyncio.create_task(server.serve(), name="http") if server else None
    if server is not None and server_task is not None:
        while not server.started and not server_task.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.01)
        if server_task.done():
            server_task.result()
            raise ServiceFailed("the HTTP server stopped during start-up")
    tasks: dict[asyncio.Task[None], Worker] = {
        asyncio.create_task(w.run(w.stop), name=w.name): w for w in workers
    }
    if on_started:
        on_started()
    stopper = asyncio.create_task(stop.wait())
    watched = set(tasks) | {stopper} | ({server_task} if server_task else set())
    await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    failure = _first_failure(tasks)
    if stop.is_set():
        log.info("stopping", extra=fields("stopping"))
    try:
        for task, worker in tasks.items():
            worker.stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_GRACE_S)
            except TimeoutError:
                log.error(
                    "%s did not stop within %.0fs; cancelling it",
                    worker.name,
                    SHUTDOWN_GRACE_S,
                    extra=fields("worker_cancelled", worker=worker.name, grace_s=SHUTDOWN_GRACE_S),
                )
                task.cancel()
            except Exception:  # noqa: BLE001, S110 - reported below through _first_failure
                pass
    finally:
        stopper.cancel()
        if server is not None and server_task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await server_task
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    failure = failure or _first_failure(tasks)
    if failure is not None:
        raise ServiceFailed(failure)


def _first_failure(tasks: dict[asyncio.Task[None], Worker]) -> str | None:
    for task, worker in tasks.items():
        if task.done() and not task.cancelled() and task.exception() is not None:
            return f"{worker.name} failed: {task.exception()}"
    return None
