"""Health and readiness: `/healthz` answers while the process lives; `/readyz` runs each named
dependency check (with a timeout) and says which ones fail. Shared by every service's HTTP app.

`/readyz` may be public: it names a failing dependency (`database`, `redis`, `kafka`, a venue)
and says `unavailable` or that it did not answer in time, never the exception's text (hosts,
ports, users). The text goes to the log, at most once a minute per dependency."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tickpipe.telemetry import metrics as tickpipe_metrics

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_S = 2.0
LOG_EVERY_S = 60.0
UNAVAILABLE = "unavailable"
TIMED_OUT = f"no answer within {CHECK_TIMEOUT_S:g}s"


class DependencyFailing(Exception):
    """Raised by a check that watches several dependencies (a processor's database and kafka):
    /readyz then names those, not the check. `failing`: name -> detail (logged, never served)."""

    def __init__(self, failing: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {why}" for name, why in failing.items()))
        self.failing = dict(failing)


class FailureLog:
    """Logs a failing dependency's detail, at most once per `every_s` for each dependency."""

    def __init__(self, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self._every_s = every_s
        self._clock = clock
        self._last_s: dict[str, float] = {}

    def __call__(self, name: str, detail: str) -> None:
        now_s = self._clock()
        last_s = self._last_s.get(name)
        if last_s is not None and now_s - last_s < self._every_s:
            return
        self._last_s[name] = now_s
        log.warning(
            "not ready: %s: %s",
            name,
            detail,
            extra={"event": "dependency_not_ready", "dependency": name, "detail": detail},
        )


async def failing_checks(
    checks: Mapping[str, Check], failure_log: Callable[[str, str], None] | None = None
) -> dict[str, str]:
    """Runs the checks concurrently; returns dependency -> public reason for each failing one
    (`unavailable`, or no answer in time); the details go to `failure_log`."""

    async def run(name: str, check: Check) -> dict[str, tuple[str, str]]:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        except TimeoutError:
            return {name: (TIMED_OUT, TIMED_OUT)}
        except DependencyFailing as exc:
            return {dependency: (UNAVAILABLE, why) for dependency, why in exc.failing.items()}
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return {name: (UNAVAILABLE, str(exc) or type(exc).__name__)}
        return {}

    results = await asyncio.gather(*(run(name, check) for name, check in checks.items()))
    failing: dict[str, str] = {}
    for result in results:
        for name, (public, detail) in result.items():
            failing[name] = public
            if failure_log is not None:
                failure_log(name, detail)
    _record_dependencies(checks, results)
    return failing


def _record_dependencies(
    checks: Mapping[str, Check], results: list[dict[str, tuple[str, str]]]
) -> None:
    """`tickpipe_dependency_up`: per check, 1 while it passes, else 0 for it and for each
    dependency it names (the processor's check names database or kafka)."""
    for name, result in zip(checks, results, strict=True):
        tickpipe_metrics.dependency_up.labels(name).set(0 if result else 1)
    for result in results:
        for name in result:
            tickpipe_metrics.dependency_up.labels(name).set(0)


def probe_routes(checks: Mapping[str, Check], *, metrics: bool = True) -> list[Route]:
    """`/healthz`, `/readyz` and (unless `metrics` is False) `/metrics` as Starlette routes."""
    failure_log = FailureLog()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        failing = await failing_checks(checks, failure_log)
        if failing:
            return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503)
        return JSONResponse({"status": "ready", "checks": sorted(checks)})

    async def metrics_text(request: Request) -> Response:
        # The checks run at each scrape, so that an alert can say which dependency is down.
        await failing_checks(checks, failure_log)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if metrics:
        routes.append(Route("/metrics", metrics_text, methods=["GET"]))
    return routes
