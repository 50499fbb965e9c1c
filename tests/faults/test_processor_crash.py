"""Scenario 1: `kill -9` of the processor in the middle of a stream, twice, with `tickpipe ingest`
producing throughout; each time a fresh processor takes over from the committed offsets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from faults.harness import (
    audit,
    committed_messages,
    ingest_totals,
    memory_mb,
    metric,
    migrate,
    pipeline_env,
    report,
    stored_count,
    stored_rows,
    topic_messages,
    wait_for,
    wait_for_count,
)
from fixtures.procs import Tickpipe, free_port, tickpipe_process

pytestmark = [pytest.mark.infra, pytest.mark.slow]

KILLS = 2
RATE_PER_S = 300


@pytest.mark.timeout(120)
def test_kill_9_of_the_processor_loses_and_duplicates_nothing(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """After each kill -9 and restart, every trade is stored exactly once, and the SMA/signal of
    the whole sequence equals that of an uninterrupted run of the same seeded market."""
    started_s = time.monotonic()
    env = pipeline_env(
        empty_postgres_url,
        kafka_bootstrap,
        kafka_topic,
        redis_url,
        redis_names,
        TICKPIPE_SIM_RATE=str(RATE_PER_S),
    )
    migrate(env)
    db = empty_postgres_url
    recoveries_s: list[float] = []
    redelivered = 0  # written before a kill but not committed: delivered again, stored once
    peak_mb = 0.0
    ingest_port = free_port()
    with tickpipe_process(
        ["ingest"], {**env, "TICKPIPE_METRICS_PORT": str(ingest_port)}, tmp_path / "ingest.log"
    ) as ingest:
        ingest.wait_http(f"http://127.0.0.1:{ingest_port}/healthz")
        for generation in range(KILLS + 1):
            port = free_port()
            restarted_s = time.monotonic()
            backlog = int(metric(ingest_port, "tickpipe_trades_ingested_total"))
            processor = Tickpipe(
                ["process"],
                {**env, "TICKPIPE_METRICS_PORT": str(port)},
                tmp_path / f"process-{generation}.log",
            )
            processor.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=30)
            if generation:  # caught up with what was produced before it started
                wait_for(lambda n=backlog: stored_count(db) >= n, 40, "catch-up after restart")
                recoveries_s.append(time.monotonic() - restarted_s)
            before = stored_count(db)
            wait_for(lambda n=before: stored_count(db) >= n + 600, 30, "progress")
            peak_mb = max(peak_mb, memory_mb(processor.process.pid)["VmHWM"])
            if generation < KILLS:
                processor.kill()  # SIGKILL, mid-stream: no flush, no commit, no goodbye
                stored_at_kill = stored_count(db)
                group = env["TICKPIPE_KAFKA_GROUP"]
                redelivered += stored_at_kill - committed_messages(
                    kafka_bootstrap, kafka_topic, group
                )
            else:
                assert ingest.terminate() == 0, ingest.log()
                accepted, dropped = ingest_totals(ingest.log())
                wait_for_count(db, accepted, timeout_s=30)
                assert processor.terminate() == 0, processor.log()

    rows = stored_rows(db)
    result = audit(rows)
    in_topic = topic_messages(kafka_bootstrap, kafka_topic)
    report(
        "processor-kill-9",
        kills=KILLS,
        sent=accepted,
        in_topic=in_topic,
        **result.numbers(),
        redelivered_seen=redelivered,
        recovery_s=max(recoveries_s),
        processor_vmhwm_mb=peak_mb,
        duration_s=time.monotonic() - started_s,
    )
    assert dropped == 0
    assert in_topic == accepted
    assert result.stored == accepted
    assert result.duplicates == result.missing == result.sma_mismatches == 0
