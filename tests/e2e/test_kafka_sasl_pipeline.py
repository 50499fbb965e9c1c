"""`tickpipe run` over Kafka with SASL/PLAIN from a client.properties file (which also names the
brokers) and a password file: every client logs in, trades flow end to end; when the password
is rotated on the broker side, /readyz answers 503 naming kafka while the clients retry, with one
authentication line in the log; with the old password back, it recovers. The broker side of
SASL is tests/fixtures/sasl_proxy.py in front of Tansu (this Tansu build stores no SASL users)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from fixtures.kafka import _TANSU_ENV, tansu_binary
from fixtures.procs import free_port, tickpipe_process
from fixtures.sasl_proxy import SaslProxy

pytestmark = [pytest.mark.infra, pytest.mark.slow]

PASSWORD = "pl41n-not-logged"


SASL = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN"}


@pytest.fixture
def sasl_broker(tmp_path: Path) -> Iterator[SaslProxy]:
    """Tansu advertising the SASL proxy's address, so every connection logs in through it."""
    broker_port = free_port()
    log_path = tmp_path / "tansu.log"
    env = {name: value for name, value in os.environ.items() if name not in _TANSU_ENV}
    with SaslProxy("127.0.0.1", broker_port, {"tickpipe": PASSWORD}) as proxy:
        args = ["broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}"]
        args += ["--advertised-listener-url", f"tcp://{proxy.address}"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(tansu_binary()), *args], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        try:
            login = {"sasl.username": "tickpipe", "sasl.password": PASSWORD}
            admin = AdminClient(
                {"bootstrap.servers": proxy.address, "log_level": 0, **SASL, **login}
            )
            wait_until(lambda: _answers(admin), 15, f"Tansu behind the SASL proxy ({log_path})")
            yield proxy
        finally:
            process.kill()
            process.wait()


def _answers(admin: AdminClient) -> bool:
    try:
        admin.list_topics(timeout=1.0)
    except KafkaException:
        return False
    return True


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout_s}s")


def readyz(base: str) -> tuple[int, dict[str, object]]:
    response = httpx.get(f"{base}/readyz", timeout=5)
    return response.status_code, response.json()


def stored(base: str) -> int:
    rows = httpx.get(f"{base}/api/v1/history/BTCUSDT", params={"limit": 1000}, timeout=5).json()
    return len(rows)


def test_run_logs_in_with_a_properties_file_and_readyz_names_kafka_while_refused(
    sasl_broker: SaslProxy, tmp_path: Path
) -> None:
    """Producer, consumer and checks all log in; trades are stored; a rotated password gives
    503 `kafka` and one authentication line; the right password back, it recovers by itself."""
    config = tmp_path / "client.properties"
    config.write_text(
        "# as a managed service hands it out\n"
        f"bootstrap.servers={sasl_broker.address}\n"
        "security.protocol=SASL_PLAINTEXT\n"
        "sasl.mechanisms=PLAIN\n"
        "sasl.username=tickpipe\n"
    )
    password = tmp_path / "kafka_password"
    password.write_text(PASSWORD + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "TICKPIPE_KAFKA_CONFIG_FILE": str(config),  # no TICKPIPE_KAFKA_BOOTSTRAP_SERVERS
        "TICKPIPE_KAFKA_SASL_PASSWORD_FILE": str(password),
        "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'tickpipe.db'}",
        "TICKPIPE_HTTP_PORT": str(port),
        "TICKPIPE_SIM_RATE": "40",
        "TICKPIPE_SIM_SEED": "5",
        "TICKPIPE_SYMBOLS": "BTCUSDT",
    }
    with tickpipe_process(["run"], env, tmp_path / "run.log") as run:
        run.wait_http(f"{base}/readyz", timeout_s=40)
        assert "kafka" in readyz(base)[1]["checks"]  # type: ignore[operator]
        wait_until(lambda: stored(base) >= 20, 30, "20 trades stored over SASL")
        accepted = [login for login in sasl_broker.logins if login.accepted]
        assert len(accepted) >= 3  # producer, consumer, readiness check (and the admin client)
        assert not [login for login in sasl_broker.logins if not login.accepted]
        assert sasl_broker.dropped_unauthenticated == 0

        sasl_broker.credentials = {"tickpipe": "rotated-elsewhere"}
        sasl_broker.drop_all()
        refused_s = wait_until(
            lambda: readyz(base)[0] == 503 and "kafka" in readyz(base)[1]["failing"],  # type: ignore[operator]
            20,
            "/readyz 503 naming kafka",
        )
        assert any(not login.accepted for login in sasl_broker.logins)

        sasl_broker.credentials = {"tickpipe": PASSWORD}
        before = stored(base)
        recovered_s = wait_until(lambda: readyz(base)[0] == 200, 30, "/readyz 200 again")
        wait_until(lambda: stored(base) > before, 20, "trades stored again")
        assert run.terminate() == 0
    log = run.log()
    auth_lines = [line for line in log.splitlines() if "Kafka authentication failed" in line]
    assert len(auth_lines) == 1, auth_lines  # however many clients and retries
    assert "invalid credentials" in auth_lines[0]
    assert PASSWORD not in log
    print(f"refused -> 503 in {refused_s:.1f} s, recovered in {recovered_s:.1f} s")
