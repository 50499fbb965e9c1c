"""The API document against a running `tickpipe run`, as a new user would try it: schemathesis
with every check (derandomized, a bounded number of examples) finds 0 failures, on the embedded
SQLite store and on PostgreSQL; real WebSocket frames validate against the served frame schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema_rs
import orjson
import pytest
from websockets.asyncio.client import connect

from fixtures.procs import free_port, tickpipe_process

pytestmark = pytest.mark.slow

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 6  # per operation and phase
FRAMES = 20


@pytest.fixture(params=["sqlite", "postgresql"])
def gateway_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A `tickpipe run` on the simulated market, storing in SQLite or PostgreSQL, with trades
    of BTCUSDT (the document's example symbol) already stored."""
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path}/tickpipe.db"
    else:
        request.applymarker(pytest.mark.infra)
        database_url = request.getfixturevalue("clean_postgres_url")
    port = free_port()
    env = {
        "TICKPIPE_HTTP_PORT": str(port),
        "TICKPIPE_DATABASE_URL": database_url,
        "TICKPIPE_SIM_RATE": "50",
        "TICKPIPE_SIM_SEED": "18",
        "TICKPIPE_SMA_WINDOW": "3",  # the frames checked must reach past the window
    }
    with tickpipe_process(["run"], env, tmp_path / "run.log") as proc:
        base = f"http://127.0.0.1:{port}"
        proc.wait_http(base + "/readyz")
        proc.wait_http(base + "/api/v1/snapshot/BTCUSDT")
        yield base
        assert proc.terminate() == 0, proc.log()


def test_schemathesis_finds_no_failure_with_every_check(gateway_url: str, tmp_path: Path) -> None:
    """Every check of schemathesis passes over every operation and phase; the only 422 a valid
    request may get is the documented start/end one (schemathesis_hooks.py)."""
    started = time.monotonic()
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{gateway_url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",  # replaced by the hook's narrower exemption
            "--max-examples",
            str(MAX_EXAMPLES),
            "--generation-deterministic",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    output = result.stdout + result.stderr
    cases = [line.strip() for line in output.splitlines() if " generated, " in line]
    print(f"schemathesis: {time.monotonic() - started:.1f}s, {cases}")
    assert result.returncode == 0, output
    assert "No issues found" in output, output
    for operation in ("10 selected / 10 total", "Coverage", "Fuzzing", "Stateful"):
        assert operation in output, output


def test_real_websocket_frames_match_the_served_schema(gateway_url: str) -> None:
    """Frames of the running pipeline validate against /schemas/ws-frame.json."""
    schema = httpx.get(f"{gateway_url}/schemas/ws-frame.json").json()
    validator = jsonschema_rs.validator_for(schema, validate_formats=True)

    async def collect() -> list[object]:
        frames: list[object] = []
        async with connect(gateway_url.replace("http://", "ws://") + "/ws") as ws:
            async with asyncio.timeout(15):
                while len(frames) < FRAMES:
                    frames.append(orjson.loads(await ws.recv()))
        return frames

    frames = asyncio.run(collect())
    assert len(frames) == FRAMES
    for frame in frames:
        errors = [error.message for error in validator.iter_errors(frame)]
        assert not errors, (frame, errors)
    signals = {frame["signal"] for frame in frames if isinstance(frame, dict)}
    assert signals & {"BUY", "SELL"}, "frames past the SMA window carry BUY/SELL"
