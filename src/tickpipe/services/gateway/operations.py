"""The probes and `/metrics` as documented routes of the gateway (tag "operations"): the same
checks as every service's (telemetry.probes), with a 503 that also carries the one error field,
`detail`, that every other 4xx/5xx of the gateway has."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tickpipe.services.gateway.schemas import Health, NotReady, Ready
from tickpipe.telemetry.probes import Check, FailureLog, failing_checks

TAG = "operations"
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": NotReady, "description": "A dependency fails or does not answer"}
}
METRICS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


def operations_router(checks: Mapping[str, Check], *, metrics: bool = True) -> APIRouter:
    """`/healthz`, `/readyz` and (unless `metrics` is False) `/metrics`."""
    router = APIRouter(tags=[TAG])
    failure_log = FailureLog()

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Response:
        """200 while the process lives."""
        return JSONResponse({"status": "ok"})

    @router.get("/readyz", response_model=Ready, responses=NOT_READY)
    async def readyz() -> Response:
        """200 when every dependency answers; else 503 naming the failing ones."""
        failing = await failing_checks(checks, failure_log)
        if failing:
            detail = "not ready: " + ", ".join(f"{name} {why}" for name, why in failing.items())
            body = {"detail": detail, "status": "unavailable", "failing": failing}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "checks": sorted(checks)})

    if metrics:

        @router.get("/metrics", response_class=Response, responses=METRICS_TEXT)
        async def metrics_text() -> Response:
            """This process's metrics."""
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
