"""/metrics runs the readiness checks, so `tickpipe_dependency_up` says which dependency is down."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from tickpipe.telemetry.probes import DependencyFailing, probe_routes


def up(dependency: str) -> float | None:
    return REGISTRY.get_sample_value("tickpipe_dependency_up", {"dependency": dependency})


async def test_each_scrape_sets_dependency_up_from_the_checks() -> None:
    """A passing check reads 1, a failing one 0, and a check that names the dependencies it
    waits on (the processor's) sets 0 for them and for itself; a recovery reads 1 again."""
    broken = {"redis": True}

    async def redis() -> None:
        if broken["redis"]:
            raise ConnectionError("refused")

    async def database() -> None:
        return None

    async def processor() -> None:
        if broken["redis"]:
            raise DependencyFailing({"kafka": "no answer"})

    checks = {"database": database, "redis": redis, "processor": processor}
    app = Starlette(routes=probe_routes(checks))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
        text = (await http.get("/metrics")).text
        assert 'tickpipe_dependency_up{dependency="redis"} 0.0' in text
        assert (up("database"), up("redis"), up("kafka"), up("processor")) == (1, 0, 0, 0)
        broken["redis"] = False
        await http.get("/metrics")
        assert (up("database"), up("redis"), up("processor")) == (1, 1, 1)
