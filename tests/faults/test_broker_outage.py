"""Scenario 4: the broker unreachable (fault proxy cut) under `tickpipe ingest` and `tickpipe
process`. The broker is a Tansu of the test's own that advertises the proxy's address, so every
connection of every client goes through the proxy."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from faults.harness import (
    audit,
    ingest_totals,
    memory_mb,
    metric,
    migrate,
    pipeline_env,
    proxied_broker,
    readyz,
    report,
    stored_count,
    stored_rows,
    wait_for,
    wait_for_count,
)
from fixtures.procs import free_port, tickpipe_process

pytestmark = [pytest.mark.infra, pytest.mark.slow]

RATE_PER_S = 200


def _not_ready_on_kafka(port: int) -> bool:
    status, body = readyz(port)
    return status == 503 and "kafka" in body["failing"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("queue_max", "outage_s"),
    [(100_000, 5.0), (100, 9.0)],
    ids=["queue-holds-the-outage", "tiny-queue-overflows"],
)
def test_broker_outage_delivers_what_fits_and_counts_what_does_not(
    queue_max: int,
    outage_s: float,
    empty_postgres_url: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """While the broker is cut the ingestor keeps accepting trades into its bounded queue and
    delivers them afterwards; what overflows the bound is dropped and counted exactly (metric and
    log), so stored + dropped == accepted. Both services report Kafka not-ready meanwhile, and
    the processor reconnects by itself."""
    started_s = time.monotonic()
    db = empty_postgres_url
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    ingest_port, process_port = free_port(), free_port()
    with proxied_broker(tmp_path / "tansu.log") as broker:
        env = pipeline_env(
            db,
            broker.address,
            topic,
            redis_url,
            redis_names,
            TICKPIPE_SIM_RATE=str(RATE_PER_S),
            TICKPIPE_KAFKA_QUEUE_MAX=str(queue_max),
        )
        migrate(env)
        with (
            tickpipe_process(
                ["process"],
                {**env, "TICKPIPE_METRICS_PORT": str(process_port)},
                tmp_path / "process.log",
            ) as processor,
            tickpipe_process(
                ["ingest"],
                {**env, "TICKPIPE_METRICS_PORT": str(ingest_port)},
                tmp_path / "ingest.log",
            ) as ingest,
        ):
            processor.wait_http(f"http://127.0.0.1:{process_port}/readyz", timeout_s=30)
            ingest.wait_http(f"http://127.0.0.1:{ingest_port}/readyz", timeout_s=30)
            wait_for(lambda: stored_count(db) >= 500, 30, "steady flow before the outage")

            broker.cut()
            cut_s = time.monotonic()
            accepted_at_cut = metric(ingest_port, "tickpipe_trades_ingested_total")
            ingest_not_ready_s = wait_for(
                lambda: _not_ready_on_kafka(ingest_port), outage_s, "ingest /readyz names kafka"
            )
            process_not_ready = _not_ready_on_kafka(process_port)
            time.sleep(max(0.0, outage_s - (time.monotonic() - cut_s)))
            accepted_in_outage = metric(ingest_port, "tickpipe_trades_ingested_total")
            accepted_in_outage -= accepted_at_cut

            broker.restore()
            restored_s = time.monotonic()
            backlog = int(metric(ingest_port, "tickpipe_trades_ingested_total"))
            ready_again_s = wait_for(
                lambda: readyz(ingest_port)[0] == readyz(process_port)[0] == 200,
                20,
                "both ready again",
            )
            dropped_metric = metric(ingest_port, "tickpipe_producer_dropped_total")
            wait_for(lambda: stored_count(db) >= backlog - dropped_metric, 40, "backlog delivered")
            caught_up_s = time.monotonic() - restored_s
            dropped_metric = metric(ingest_port, "tickpipe_producer_dropped_total")
            outages = [
                metric(port, "tickpipe_dependency_outages_total", dependency="kafka")
                for port in (ingest_port, process_port)
            ]
            peak_mb = [memory_mb(p.process.pid)["VmHWM"] for p in (ingest, processor)]
            assert ingest.terminate() == 0, ingest.log()
            accepted, dropped = ingest_totals(ingest.log())
            wait_for_count(db, accepted - dropped, timeout_s=30)
            assert processor.terminate() == 0, processor.log()

    result = audit(stored_rows(db))
    report(
        f"broker-outage-queue-{queue_max}",
        outage_s=outage_s,
        sent=accepted,
        accepted_during_outage=int(accepted_in_outage),
        dropped=dropped,
        dropped_metric=int(dropped_metric),
        **result.numbers(),
        kafka_outages_counted_ingest=int(outages[0]),
        kafka_outages_counted_process=int(outages[1]),
        ingest_not_ready_after_s=ingest_not_ready_s,
        ready_again_after_s=ready_again_s,
        caught_up_after_s=caught_up_s,
        ingest_vmhwm_mb=peak_mb[0],
        processor_vmhwm_mb=peak_mb[1],
        duration_s=time.monotonic() - started_s,
    )
    assert accepted_in_outage >= 0.5 * RATE_PER_S * outage_s, "kept accepting during the cut"
    assert process_not_ready, "the processor reports Kafka not-ready during the cut"
    # librdkafka may report "all brokers down" again if a reconnect flaps mid-cut: 1 or 2.
    assert all(1 <= count <= 2 for count in outages), f"the outage is counted: {outages}"
    assert result.duplicates == result.sma_mismatches == 0
    assert result.stored + dropped == accepted
    assert result.missing == dropped, "the only gaps are the trades counted as dropped"
    assert dropped == dropped_metric
    if queue_max >= RATE_PER_S * outage_s:
        assert dropped == 0
    else:
        assert dropped > 0
        assert "dropped trade" in ingest.log()
