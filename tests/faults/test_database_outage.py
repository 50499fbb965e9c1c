"""Scenario 2: PostgreSQL unreachable for 15 s (fault proxy cut) while `tickpipe ingest` keeps
producing into Kafka and `tickpipe process` keeps trying to store."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from faults.harness import (
    SYMBOLS,
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
    stored_streams,
    via,
    wait_for,
    wait_for_count,
)
from fixtures.procs import free_port, tickpipe_process

pytestmark = [pytest.mark.infra, pytest.mark.slow]

OUTAGE_S = 15.0
RATE_PER_S = 1_000
BATCH_MAX_TRADES = 500
BACKOFF_CAP_S = 5.0  # tickpipe/backoff.py Backoff.max_s
# One batch plus librdkafka's prefetch (a batch per partition). Before the prefetch was bounded in
# messages, librdkafka fetched the whole backlog: +25 MB for 30,000 trades, and growing.
MAX_GROWTH_MB = 10.0
_RETRY_DELAY = re.compile(r"store write failed \(attempt \d+\), retrying in ([\d.]+)s")


@pytest.mark.timeout(150)
def test_postgres_outage_is_waited_out_with_bounded_memory_and_nothing_lost(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """During a 15 s outage the processor retries with capped backoff, stops consuming (memory
    stays bounded), reports not-ready naming the database; after it, it catches up with every
    trade stored exactly once and the SMAs of an uninterrupted run."""
    started_s = time.monotonic()
    db = empty_postgres_url
    env = pipeline_env(
        db,
        kafka_bootstrap,
        kafka_topic,
        redis_url,
        redis_names,
        TICKPIPE_SIM_RATE=str(RATE_PER_S),
        TICKPIPE_BATCH_MAX_TRADES=str(BATCH_MAX_TRADES),
    )
    migrate(env)
    ingest_port, process_port = free_port(), free_port()
    with (
        proxy_for(db) as database,
        tickpipe_process(
            ["process"],
            {
                **env,
                "TICKPIPE_DATABASE_URL": via(db, database),
                "TICKPIPE_METRICS_PORT": str(process_port),
            },
            tmp_path / "process.log",
        ) as processor,
        tickpipe_process(
            ["ingest"], {**env, "TICKPIPE_METRICS_PORT": str(ingest_port)}, tmp_path / "ingest.log"
        ) as ingest,
    ):
        processor.wait_http(f"http://127.0.0.1:{process_port}/readyz", timeout_s=30)
        # Every stream seen and stored first: a stream first seen in the outage retries its window
        # rebuild instead of the store write that this scenario counts.
        wait_for(
            lambda: stored_count(db) >= 2_000 and stored_streams(db) == len(SYMBOLS.split(",")),
            30,
            "steady flow in every stream before the outage",
        )
        before_mb = memory_mb(processor.process.pid)

        database.cut()
        cut_s = time.monotonic()
        not_ready_s = wait_for(
            lambda: readyz(process_port)[0] == 503, 10, "/readyz turns 503 in the outage"
        )
        status, body = readyz(process_port)
        stored_in_outage = stored_count(db)
        rss_mb: list[float] = []
        while time.monotonic() - cut_s < OUTAGE_S:
            rss_mb.append(memory_mb(processor.process.pid)["VmRSS"])
            time.sleep(1.0)
        assert stored_count(db) == stored_in_outage, "nothing was stored during the outage"
        during_mb = memory_mb(processor.process.pid)
        retries = metric(process_port, "tickpipe_store_retries_total")
        outages = metric(process_port, "tickpipe_dependency_outages_total", dependency="database")
        backlog = int(metric(ingest_port, "tickpipe_trades_ingested_total"))

        database.restore()
        restored_s = time.monotonic()
        ready_again_s = wait_for(
            lambda: readyz(process_port)[0] == 200, 20, "/readyz back to 200 after restore"
        )
        wait_for(lambda: stored_count(db) >= backlog, 60, "catch-up")
        caught_up_s = time.monotonic() - restored_s
        assert ingest.terminate() == 0, ingest.log()
        accepted, dropped = ingest_totals(ingest.log())
        wait_for_count(db, accepted, timeout_s=30)
        after_mb = memory_mb(processor.process.pid)
        assert processor.terminate() == 0, processor.log()
        delays_s = [float(d) for d in _RETRY_DELAY.findall(processor.log())]

    result = audit(stored_rows(db))
    growth_mb = during_mb["VmHWM"] - before_mb["VmHWM"]
    report(
        "postgres-outage",
        outage_s=OUTAGE_S,
        sent=accepted,
        backlog_at_restore=backlog - stored_in_outage,
        **result.numbers(),
        store_retries=int(retries),
        database_outages_counted=int(outages),
        max_retry_delay_s=max(delays_s),
        not_ready_after_s=not_ready_s,
        ready_again_after_s=ready_again_s,
        caught_up_after_s=caught_up_s,
        vmhwm_before_mb=before_mb["VmHWM"],
        vmhwm_outage_mb=during_mb["VmHWM"],
        vmhwm_end_mb=after_mb["VmHWM"],
        rss_max_outage_mb=max(rss_mb),
        rss_samples_mb="/".join(f"{v:.0f}" for v in rss_mb[::5]),
        duration_s=time.monotonic() - started_s,
    )
    assert status == 503
    assert "database" in body["failing"], body
    assert body["failing"]["database"] == "unavailable", body  # no host, port or exception
    assert "not ready: database: " in processor.log()  # the detail goes to the log
    # Backoff doubling to a 5 s cap: a handful of retries, not a hot loop.
    assert 5 <= retries <= 60, "retried, neither once nor in a hot loop"
    # The log says so at most once per 10 s (one rate-limited line), not once per retry.
    assert 1 <= len(delays_s) <= OUTAGE_S / 10 + 1, "the outage reads as a few lines"
    assert retries >= len(delays_s), "every retry is counted"
    assert outages == 1
    assert max(delays_s) <= BACKOFF_CAP_S, "the backoff is capped"
    assert growth_mb < MAX_GROWTH_MB, "memory stayed bounded while the backlog grew"
    assert rss_mb[-1] - rss_mb[len(rss_mb) // 3] < 2.0, "memory flat while the backlog doubled"
    assert dropped == 0
    assert result.stored == accepted
    assert result.duplicates == result.missing == result.sma_mismatches == 0
