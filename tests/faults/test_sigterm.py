"""Scenario 6: SIGTERM to `tickpipe process`, `gateway` and `ingest` while trades flow (and to the
processor in the middle of a PostgreSQL outage): each exits 0 within 10 s, and after restarts
every trade accepted is stored exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from faults.harness import (
    WsRecorder,
    audit,
    ingest_totals,
    memory_mb,
    metric,
    migrate,
    pipeline_env,
    proxy_for,
    readyz,
    report,
    stored_count,
    stored_rows,
    via,
    wait_for,
    wait_for_count,
)
from fixtures.procs import Tickpipe, free_port, tickpipe_process

pytestmark = [pytest.mark.infra, pytest.mark.slow]

EXIT_BUDGET_S = 10.0
RATE_PER_S = 300


def _sigterm(proc: Tickpipe) -> tuple[int, float]:
    """SIGTERM; returns (exit code, seconds until the process was gone)."""
    started_s = time.monotonic()
    code = proc.terminate(timeout_s=EXIT_BUDGET_S + 5)
    return code, time.monotonic() - started_s


def _flowing(db: str, more: int = 300, timeout_s: float = 30.0) -> None:
    before = stored_count(db)
    wait_for(lambda: stored_count(db) >= before + more, timeout_s, "trades flowing")


@pytest.mark.timeout(120)
def test_sigterm_during_flow_exits_cleanly_and_loses_nothing(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """Processor, gateway (with a WebSocket client connected) and ingestor (twice) each stop
    within 10 s with status 0 while trades flow; after the restarts nothing is lost or doubled."""
    started_s = time.monotonic()
    db = empty_postgres_url
    env = pipeline_env(
        db, kafka_bootstrap, kafka_topic, redis_url, redis_names, TICKPIPE_SIM_RATE=str(RATE_PER_S)
    )
    migrate(env)
    exits: dict[str, tuple[int, float]] = {}
    gateway_port, process_port = free_port(), free_port()
    process_env = {**env, "TICKPIPE_METRICS_PORT": str(process_port)}
    gateway_env = {**env, "TICKPIPE_HTTP_PORT": str(gateway_port)}

    def start(args: list[str], run_env: dict[str, str], name: str) -> Tickpipe:
        proc = Tickpipe(args, run_env, tmp_path / f"{name}.log")
        port = run_env.get("TICKPIPE_METRICS_PORT") or run_env["TICKPIPE_HTTP_PORT"]
        path = "/healthz" if args == ["ingest"] else "/readyz"
        proc.wait_http(f"http://127.0.0.1:{port}{path}", timeout_s=30)
        return proc

    ingest_env = {**env, "TICKPIPE_METRICS_PORT": str(free_port())}
    processor = start(["process"], process_env, "process-1")
    gateway = start(["gateway"], gateway_env, "gateway-1")
    ingest = start(["ingest"], ingest_env, "ingest-1")
    logs: list[str] = []
    try:
        with WsRecorder(f"ws://127.0.0.1:{gateway_port}/ws") as client:
            _flowing(db)
            exits["process"] = _sigterm(processor)
            processor = start(["process"], process_env, "process-2")
            _flowing(db)
            exits["gateway"] = _sigterm(gateway)
            wait_for(lambda: client.closed_code is not None, 5, "the client saw the close")
        gateway = start(["gateway"], gateway_env, "gateway-2")
        with WsRecorder(f"ws://127.0.0.1:{gateway_port}/ws") as second_client:
            wait_for(lambda: len(second_client.frames) > 50, 10, "frames from the new gateway")
        exits["ingest"] = _sigterm(ingest)
        logs.append(ingest.log())
        ingest = start(["ingest"], ingest_env, "ingest-2")
        _flowing(db)
        exits["ingest-again"] = _sigterm(ingest)
        logs.append(ingest.log())
        accepted = sum(ingest_totals(log)[0] for log in logs)
        wait_for_count(db, accepted, timeout_s=30)
        peak_mb = [memory_mb(p.process.pid)["VmHWM"] for p in (processor, gateway)]
        exits["process-again"] = _sigterm(processor)
        exits["gateway-again"] = _sigterm(gateway)
    finally:
        for proc in (processor, gateway, ingest):
            proc.kill()

    result = audit(stored_rows(db))
    report(
        "sigterm-during-flow",
        sent=accepted,
        **result.numbers(),
        **{f"exit_{name}_s": seconds for name, (_, seconds) in exits.items()},
        ws_close_code=client.closed_code,
        processor_vmhwm_mb=peak_mb[0],
        gateway_vmhwm_mb=peak_mb[1],
        duration_s=time.monotonic() - started_s,
    )
    for name, (code, seconds) in exits.items():
        assert code == 0, name
        assert seconds < EXIT_BUDGET_S, name
    assert client.closed_code in (1001, 1012), "the gateway said it was going away"
    assert result.stored == accepted
    assert result.duplicates == result.missing == result.sma_mismatches == 0


@pytest.mark.timeout(120)
def test_sigterm_during_a_database_outage_exits_in_time_and_loses_nothing(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """A processor retrying writes against an unreachable PostgreSQL still stops within 10 s
    (its unstored batch is not committed); a new one stores everything once."""
    started_s = time.monotonic()
    db = empty_postgres_url
    env = pipeline_env(db, kafka_bootstrap, kafka_topic, redis_url, redis_names)
    migrate(env)
    process_port = free_port()
    with (
        proxy_for(db) as database,
        tickpipe_process(
            ["ingest"], {**env, "TICKPIPE_METRICS_PORT": str(free_port())}, tmp_path / "ingest.log"
        ) as ingest,
    ):
        process_env = {
            **env,
            "TICKPIPE_DATABASE_URL": via(db, database),
            "TICKPIPE_METRICS_PORT": str(process_port),
        }
        with tickpipe_process(["process"], process_env, tmp_path / "process-1.log") as processor:
            processor.wait_http(f"http://127.0.0.1:{process_port}/readyz", timeout_s=30)
            _flowing(db)
            database.cut()
            wait_for(lambda: readyz(process_port)[0] == 503, 10, "not ready in the outage")
            wait_for(
                lambda: metric(process_port, "tickpipe_store_retries_total") >= 3,
                20,
                "well into the retries",
            )
            code, exit_s = _sigterm(processor)
        database.restore()
        with tickpipe_process(["process"], process_env, tmp_path / "process-2.log") as processor:
            processor.wait_http(f"http://127.0.0.1:{process_port}/readyz", timeout_s=30)
            _flowing(db)
            assert ingest.terminate() == 0, ingest.log()
            accepted, _ = ingest_totals(ingest.log())
            wait_for_count(db, accepted, timeout_s=30)
            assert processor.terminate() == 0, processor.log()

    result = audit(stored_rows(db))
    report(
        "sigterm-in-database-outage",
        sent=accepted,
        **result.numbers(),
        exit_s=exit_s,
        exit_code=code,
        duration_s=time.monotonic() - started_s,
    )
    assert code == 0
    assert exit_s < EXIT_BUDGET_S
    assert result.stored == accepted
    assert result.duplicates == result.missing == result.sma_mismatches == 0
