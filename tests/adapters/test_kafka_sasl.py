"""Kafka clients against a broker that requires SASL (Tansu `--authentication`): a client without
SASL is refused and /readyz names kafka; SASL settings from the environment reach the wire (the
broker looks the user up), a refused authentication is one clear log line, and no password
appears anywhere. The broker stores no SCRAM users here, so no login can succeed."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from fixtures.procs import TICKPIPE, free_port
from tickpipe.adapters.bus.kafka import KafkaPing, KafkaUnavailable
from tickpipe.telemetry.probes import Check, probe_routes

pytestmark = pytest.mark.infra

PASSWORD = "hunter2-not-logged"
SCRAM = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "tickpipe",
    "sasl.password": PASSWORD,
}


async def readyz(checks: Mapping[str, Check]) -> httpx.Response:
    app = Starlette(routes=probe_routes(checks))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        return await client.get("/readyz")


async def test_readyz_names_kafka_when_the_broker_refuses_a_client_without_sasl(
    kafka_sasl_bootstrap: str, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """The same check passes on the open broker and answers 503 `kafka` on the SASL one."""
    open_broker = await readyz({"kafka": KafkaPing(kafka_bootstrap, kafka_topic)})
    assert open_broker.status_code == 200
    sasl_broker = await readyz({"kafka": KafkaPing(kafka_sasl_bootstrap, kafka_topic)})
    assert sasl_broker.status_code == 503
    assert list(sasl_broker.json()["failing"]) == ["kafka"]


async def test_sasl_settings_reach_the_wire_and_a_refusal_is_one_clear_line(
    kafka_sasl_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With SCRAM settings the broker answers `unknown-user` (it read the username from the
    wire); readiness says authentication failed, logged once, without the password."""
    ping = KafkaPing(kafka_sasl_bootstrap, "trades", properties=SCRAM)
    caplog.set_level(logging.INFO)
    for _ in range(3):
        with pytest.raises(KafkaUnavailable, match=r"^Kafka refused authentication$"):
            await ping()
    response = await readyz({"kafka": ping})
    assert response.status_code == 503
    assert list(response.json()["failing"]) == ["kafka"]
    lines = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(lines) == 1, lines  # rate-limited across the retries
    assert "unknown-user" in lines[0]
    assert "TICKPIPE_KAFKA_SASL_USERNAME" in lines[0]  # says what to check
    assert PASSWORD not in caplog.text + response.text


@pytest.mark.slow
def test_ingest_with_sasl_from_the_environment_exits_1_naming_authentication(
    kafka_sasl_bootstrap: str, tmp_path: Path
) -> None:
    """`tickpipe ingest` given the shortcuts (password from a *_FILE) puts SASL on the wire,
    and stops with one line saying authentication failed; the password is never printed."""
    password_file = tmp_path / "kafka-password"
    password_file.write_text(PASSWORD + "\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TICKPIPE_")}
    env |= {
        "TICKPIPE_KAFKA_BOOTSTRAP_SERVERS": kafka_sasl_bootstrap,
        "TICKPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "TICKPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "TICKPIPE_KAFKA_SASL_USERNAME": "tickpipe",
        "TICKPIPE_KAFKA_SASL_PASSWORD_FILE": str(password_file),
        "TICKPIPE_METRICS_PORT": str(free_port()),
    }
    started_s = time.monotonic()
    done = subprocess.run(
        [*TICKPIPE, "ingest"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    elapsed_s = time.monotonic() - started_s
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tickpipe: error: Kafka at ")
    assert "authentication failed (check TICKPIPE_KAFKA_SASL_USERNAME" in last
    auth_lines = [
        line for line in done.stderr.splitlines() if "Kafka authentication failed" in line
    ]
    assert len(auth_lines) == 1, done.stderr
    assert "SCRAM authentication failed: broker responded with unknown-user" in auth_lines[0]
    assert PASSWORD not in done.stderr + done.stdout
    assert elapsed_s < 10  # a refused login ends the start-up wait; no 10 s timeout


@pytest.mark.slow
def test_ingest_without_sasl_against_a_sasl_broker_exits_1_saying_what_to_set(
    kafka_sasl_bootstrap: str,
) -> None:
    """A client with no SASL is dropped by the broker: `tickpipe ingest` stops with one line
    pointing at TICKPIPE_KAFKA_SECURITY_PROTOCOL, and librdkafka's reconnect failures are
    rate-limited (not one line per reconnect)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TICKPIPE_")}
    env |= {
        "TICKPIPE_KAFKA_BOOTSTRAP_SERVERS": kafka_sasl_bootstrap,
        "TICKPIPE_METRICS_PORT": str(free_port()),
    }
    done = subprocess.run(
        [*TICKPIPE, "ingest"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"tickpipe: error: Kafka at {kafka_sasl_bootstrap} did not answer")
    assert lines[-1].endswith("see TICKPIPE_KAFKA_SECURITY_PROTOCOL)")
    assert len(lines) <= 4, done.stderr  # ~10 s of reconnects, one FAIL line per 10 s
