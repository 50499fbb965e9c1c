"""Scenario 1: `kill -9` of the processor in the middle of a stream, twice, with `tickpipe ingest`
producing throughout; each time a fresh processor takes over from the committed offsets.

The processor reaches PostgreSQL through a fault proxy that adds latency, so a store write's
acknowledgement takes a while to come back: the kills land while a batch is stored but its
offsets are not yet committed, the case that exercises redelivery (the batch comes back and must
not be stored twice), not merely while the processor idles between batches."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from faults.harness import (
    CommittedOffsets,
    audit,
    ingest_totals,
    memory_mb,
    metric,
    migrate,
    pipeline_env,
    proxy_for,
    report,
    stored_count,
    stored_rows,
    topic_messages,
    via,
    wait_for,
    wait_for_count,
)
from fixtures.procs import Tickpipe, free_port, tickpipe_process

pytestmark = [pytest.mark.infra, pytest.mark.slow]

KILLS = 2
RATE_PER_S = 300
DATABASE_LATENCY_S = 0.1  # each way, between the processor and PostgreSQL


def _kill_between_write_and_commit(
    processor: Tickpipe, db: str, committed: CommittedOffsets, timeout_s: float = 20.0
) -> int:
    """SIGKILL while stored rows are ahead of committed offsets; returns how many were ahead
    (trades the next processor gets again)."""
    deadline_s = time.monotonic() + timeout_s
    while stored_count(db) <= committed() and time.monotonic() < deadline_s:
        pass
    processor.kill()  # no flush, no commit, no goodbye
    time.sleep(0.5)
    return stored_count(db) - committed()


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
    db = empty_postgres_url
    env = pipeline_env(
        db,
        kafka_bootstrap,
        kafka_topic,
        redis_url,
        redis_names,
        TICKPIPE_SIM_RATE=str(RATE_PER_S),
        TICKPIPE_BATCH_MAX_TRADES="5000",
    )
    migrate(env)
    recoveries_s: list[float] = []
    redelivered = 0  # stored before a kill but not committed: delivered again
    peak_mb = 0.0
    ingest_port = free_port()
    committed = CommittedOffsets(kafka_bootstrap, kafka_topic, env["TICKPIPE_KAFKA_GROUP"])
    with (
        proxy_for(db) as database,
        tickpipe_process(
            ["ingest"], {**env, "TICKPIPE_METRICS_PORT": str(ingest_port)}, tmp_path / "ingest.log"
        ) as ingest,
    ):
        database.delay_s = DATABASE_LATENCY_S
        process_env = {**env, "TICKPIPE_DATABASE_URL": via(db, database)}
        ingest.wait_http(f"http://127.0.0.1:{ingest_port}/healthz")
        for generation in range(KILLS + 1):
            port = free_port()
            restarted_s = time.monotonic()
            backlog = int(metric(ingest_port, "tickpipe_trades_ingested_total"))
            processor = Tickpipe(
                ["process"],
                {**process_env, "TICKPIPE_METRICS_PORT": str(port)},
                tmp_path / f"process-{generation}.log",
            )
            processor.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=30)
            if generation:  # caught up with what was produced before it started
                wait_for(lambda n=backlog: stored_count(db) >= n, 40, "catch-up")
                recoveries_s.append(time.monotonic() - restarted_s)
            before = stored_count(db)
            wait_for(lambda n=before: stored_count(db) >= n + 600, 30, "progress")
            peak_mb = max(peak_mb, memory_mb(processor.process.pid)["VmHWM"])
            if generation < KILLS:
                redelivered += _kill_between_write_and_commit(processor, db, committed)
        assert ingest.terminate() == 0, ingest.log()
        accepted, dropped = ingest_totals(ingest.log())
        wait_for_count(db, accepted, timeout_s=30)
        assert processor.terminate() == 0, processor.log()
    committed.close()
    in_topic = topic_messages(kafka_bootstrap, kafka_topic)

    result = audit(stored_rows(db))
    report(
        "processor-kill-9",
        kills=KILLS,
        sent=accepted,
        in_topic=in_topic,
        **result.numbers(),
        redelivered=redelivered,
        recovery_s=max(recoveries_s),
        processor_vmhwm_mb=peak_mb,
        duration_s=time.monotonic() - started_s,
    )
    assert dropped == 0
    assert in_topic == accepted
    assert result.stored == accepted
    assert result.duplicates == result.missing == result.sma_mismatches == 0
    assert redelivered > 0, "a kill landed between a store write and its commit"
