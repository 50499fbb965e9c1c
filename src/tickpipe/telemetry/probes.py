"""Health and readiness: `/healthz` answers while the process lives; `/readyz` runs each named
dependency check (with a timeout) and says which ones fail. Shared by every service's HTTP app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_S = 2.0


async def failing_checks(checks: Mapping[str, Check]) -> dict[str, str]:
    """Runs the checks concurrently; returns name -> reason for each one that failed."""

    async def run(check: Check) -> str | None:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_S:g}s"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return str(exc) or type(exc).__name__
        return None

    results = await asyncio.gather(*(run(check) for check in checks.values()))
    return {name: reason for name, reason in zip(checks, results, strict=True) if reason}


def probe_routes(checks: Mapping[str, Check]) -> list[Route]:
    """`/healthz`, `/readyz` and `/metrics` as Starlette routes."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        failing = await failing_checks(checks)
        if failing:
            return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503)
        return JSONResponse({"status": "ready", "checks": sorted(checks)})

    async def metrics_text(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ]
