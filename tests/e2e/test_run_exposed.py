"""`tickpipe run` as it would be exposed: /metrics moved to TICKPIPE_METRICS_PORT, nosniff on
both ports, the dashboard's CSP, and the WebSocket limit from the environment."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from fixtures.procs import free_port, tickpipe_process

pytestmark = [pytest.mark.slow]


def test_metrics_port_and_limits_from_the_environment(tmp_path: Path) -> None:
    """Public port: API, dashboard with CSP, no /metrics, a 3rd WebSocket from one address
    refused with 503. Metrics port: /metrics, /readyz. nosniff everywhere."""
    port, metrics_port = free_port(), free_port()
    env = {
        "TICKPIPE_HTTP_PORT": str(port),
        "TICKPIPE_METRICS_PORT": str(metrics_port),
        "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp_path}/run.db",
        "TICKPIPE_SIM_RATE": "5",
        "TICKPIPE_WS_MAX_CLIENTS_PER_IP": "2",
    }
    with tickpipe_process(["run"], env, tmp_path / "run.log") as proc:
        public = f"http://127.0.0.1:{port}"
        private = f"http://127.0.0.1:{metrics_port}"
        proc.wait_http(f"{public}/readyz", timeout_s=30)
        proc.wait_http(f"{private}/readyz", timeout_s=10)
        answers = {
            "public metrics": httpx.get(f"{public}/metrics"),
            "private metrics": httpx.get(f"{private}/metrics"),
            "dashboard": httpx.get(f"{public}/"),
            "api": httpx.get(f"{public}/api/v1/symbols"),
            "private readyz": httpx.get(f"{private}/readyz"),
        }
        assert answers["public metrics"].status_code == 404
        assert "tickpipe_trades_ingested_total" in answers["private metrics"].text
        assert "default-src 'self'" in answers["dashboard"].headers["content-security-policy"]
        for name, answer in answers.items():
            assert answer.headers["x-content-type-options"] == "nosniff", name

        url = f"ws://127.0.0.1:{port}/ws"
        with connect(url, open_timeout=5), connect(url, open_timeout=5):
            with pytest.raises(InvalidStatus) as refused:
                connect(url, open_timeout=5)
            assert refused.value.response.status_code == 503
            assert b"too many WebSockets from one address" in refused.value.response.body
        with connect(url, open_timeout=5) as again:  # slots freed
            assert again.recv(timeout=10)
        refusals = httpx.get(f"{private}/metrics").text
        assert 'tickpipe_websocket_refused_total{reason="address_full"} 1.0' in refusals
        assert proc.terminate() == 0, proc.log()
