"""`tickpipe process --workers N`: N processor processes under one command.

Each worker is a `tickpipe process` of its own, started with the command's own arguments: one
consumer each in the same group, so the group spreads the partitions over them (a worker gets
none when there are more workers than partitions). Worker i serves its probes on 127.0.0.1,
port metrics port + 1 + i, and as the workers share one stderr, it names itself on each log
line (`[worker i]`, in JSON `"worker": i`); the command's own lines have no tag. The command
itself serves on the metrics port: `/healthz`, `/readyz` (ready when every worker is; else it
names what a worker misses, as one processor would) and `/metrics` (every worker's, each sample
labelled `worker="i"`, plus `tickpipe_worker_up`).

SIGTERM/SIGINT go to every worker at once; each has a single processor's stop budget, then it is
killed. A worker that exits on its own stops the others, and the command exits non-zero naming
it (let the supervisor of the command restart it: one restart policy, not two).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tickpipe.services.gateway.headers import SecurityHeaders
from tickpipe.services.runtime import SHUTDOWN_GRACE_S, ServiceFailed, http_server
from tickpipe.telemetry.exposition import merge_expositions
from tickpipe.telemetry.logs import fields
from tickpipe.telemetry.probes import Check, DependencyFailing, probe_routes

log = logging.getLogger(__name__)

WORKER_HOST = "127.0.0.1"
WORKER_STOP_S = SHUTDOWN_GRACE_S + 1.5  # a worker's own grace, then its interpreter's exit
WORKER_HTTP_TIMEOUT_S = 2.0
WORKER_POLL_S = 0.05  # how often the workers' exits are looked for
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def worker_ports(metrics_port: int, count: int) -> list[int]:
    return [metrics_port + 1 + index for index in range(count)]


def worker_argv(command_argv: Sequence[str], index: int, port: int) -> list[str]:
    """The command's own arguments, then what makes it worker `index` (later flags win); the
    index only names the worker in its log lines."""
    return [
        sys.executable,
        "-m",
        "tickpipe",
        *command_argv,
        *("--workers", "1", "--host", WORKER_HOST, "--metrics-port", str(port)),
        *("--worker-index", str(index)),
    ]


def _stop_with_parent() -> Callable[[], None] | None:
    """In each child, before exec: SIGTERM when this process dies, even by SIGKILL (Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return functools.partial(prctl, _PR_SET_PDEATHSIG, int(signal.SIGTERM))


async def _http_get(port: int, path: str) -> tuple[int, bytes]:
    """A GET to a worker's probe server (HTTP/1.0: it closes the connection after answering)."""
    reader, writer = await asyncio.open_connection(WORKER_HOST, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {WORKER_HOST}\r\n\r\n".encode())
        answer = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _worker_ready(index: int, port: int) -> Check:
    async def check() -> None:
        status, body = await asyncio.wait_for(_http_get(port, "/readyz"), WORKER_HTTP_TIMEOUT_S)
        if status == 200:
            return
        failing = orjson.loads(body).get("failing", {}) if status == 503 else {}
        raise DependencyFailing(
            {name: f"worker {index}: {why}" for name, why in failing.items()}
            or {f"worker-{index}": f"/readyz answered {status}"}
        )

    return check


def _metrics_route(ports: Sequence[int]) -> Route:
    async def metrics_text(request: Request) -> Response:
        async def scrape(port: int) -> str | None:
            try:
                status, body = await asyncio.wait_for(
                    _http_get(port, "/metrics"), WORKER_HTTP_TIMEOUT_S
                )
            except (OSError, TimeoutError, ValueError, IndexError):
                return None
            return body.decode() if status == 200 else None

        texts = await asyncio.gather(*(scrape(port) for port in ports))
        up = [
            "# HELP tickpipe_worker_up 1 while the worker answers its /metrics",
            "# TYPE tickpipe_worker_up gauge",
        ]
        up += [
            f'tickpipe_worker_up{{worker="{i}"}} {int(t is not None)}' for i, t in enumerate(texts)
        ]
        merged = merge_expositions(
            {str(i): text for i, text in enumerate(texts) if text is not None}, "worker"
        )
        return Response("\n".join(up) + "\n" + merged, media_type=_CONTENT_TYPE)

    return Route("/metrics", metrics_text, methods=["GET"])


def start_workers(
    command_argv: Sequence[str], ports: Sequence[int]
) -> list[subprocess.Popen[bytes]]:
    """Starts the workers. The parent-death hook runs between fork and exec, which is only safe
    while this process has a single thread (tracing's exporter thread, if any, rules it out)."""
    preexec = _stop_with_parent() if threading.active_count() == 1 else None
    return [
        subprocess.Popen(worker_argv(command_argv, index, port), preexec_fn=preexec)  # noqa: S603 - our own interpreter and arguments
        for index, port in enumerate(ports)
    ]


async def run_workers(
    children: Sequence[subprocess.Popen[bytes]], ports: Sequence[int], host: str, port: int
) -> None:
    """Serves the probes and watches the workers until a signal or a worker's exit; then stops
    every worker within its budget. Raises ServiceFailed if a worker ended on its own or badly."""
    checks = {f"worker-{i}": _worker_ready(i, p) for i, p in enumerate(ports)}
    routes = [*probe_routes(checks, metrics=False), _metrics_route(ports)]
    app = SecurityHeaders(Starlette(routes=routes))
    server = http_server(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server_task = asyncio.create_task(server.serve(), name="workers-http")
    watching = asyncio.create_task(_first_exit(children), name="workers-watch")
    stopping = asyncio.create_task(stop.wait())
    failure: str | None = None
    try:
        log.info(
            "%d processor workers started, probes on %s:%d",
            len(children),
            host,
            port,
            extra=fields("workers_started", workers=len(children), pids=[c.pid for c in children]),
        )
        await asyncio.wait({stopping, server_task, watching}, return_when=asyncio.FIRST_COMPLETED)
        if watching.done():
            index = watching.result()
            failure = f"worker {index} exited with code {children[index].returncode}"
        elif server_task.done():
            failure = f"the probe server on port {port} stopped"
        else:
            log.info("stopping %d workers", len(children), extra=fields("stopping"))
    finally:
        watching.cancel()
        stopping.cancel()
        codes = await _stop_all(children)
        server.should_exit = True
        with contextlib.suppress(Exception):
            await server_task
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if failure is None:
        bad = [f"worker {i} exited with code {code}" for i, code in enumerate(codes) if code]
        failure = "; ".join(bad) or None
    if failure is not None:
        raise ServiceFailed(failure)


async def _first_exit(children: Sequence[subprocess.Popen[bytes]]) -> int:
    """The index of the first worker found exited (polled: no thread per worker)."""
    while True:
        for index, child in enumerate(children):
            if child.poll() is not None:
                return index
        await asyncio.sleep(WORKER_POLL_S)


async def _stop_all(children: Sequence[subprocess.Popen[bytes]]) -> list[int]:
    """SIGTERM to every worker still running, SIGKILL to those still running WORKER_STOP_S
    later; returns every worker's exit code."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline_s = time.monotonic() + WORKER_STOP_S
    while any(c.poll() is None for c in children) and time.monotonic() < deadline_s:  # noqa: ASYNC110 - a child's exit has no event
        await asyncio.sleep(WORKER_POLL_S)
    for index, child in enumerate(children):
        if child.poll() is None:
            log.error(
                "worker %d did not stop within %.1fs; killing it",
                index,
                WORKER_STOP_S,
                extra=fields("worker_killed", worker=index, grace_s=WORKER_STOP_S),
            )
            child.kill()
    return [await asyncio.to_thread(child.wait) for child in children]
