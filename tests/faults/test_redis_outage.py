"""Scenario 3: Redis unreachable for 10 s (fault proxy cut) between Redis and both `tickpipe
process` and `tickpipe gateway`, while a WebSocket client stays connected to the gateway."""

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
from fixtures.procs import free_port, tickpipe_process

pytestmark = [pytest.mark.infra, pytest.mark.slow]

OUTAGE_S = 10.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("blackhole", [False, True], ids=["reset", "blackhole"])
def test_redis_outage_keeps_storing_and_live_updates_come_back(
    blackhole: bool,
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """While Redis is cut, trades are still stored at full pace and both services report Redis
    not-ready; after it, publishing resumes, the gateway re-subscribes by itself and the same
    WebSocket connection gets updates again."""
    started_s = time.monotonic()
    db = empty_postgres_url
    env = pipeline_env(db, kafka_bootstrap, kafka_topic, redis_url, redis_names)
    migrate(env)
    ingest_port, process_port, gateway_port = free_port(), free_port(), free_port()
    with proxy_for(redis_url) as redis_proxy:
        redis_env = {**env, "TICKPIPE_REDIS_URL": via(redis_url, redis_proxy)}
        with (
            tickpipe_process(
                ["process"],
                {**redis_env, "TICKPIPE_METRICS_PORT": str(process_port)},
                tmp_path / "process.log",
            ) as processor,
            tickpipe_process(
                ["gateway"],
                {**redis_env, "TICKPIPE_HTTP_PORT": str(gateway_port)},
                tmp_path / "gateway.log",
            ) as gateway,
        ):
            processor.wait_http(f"http://127.0.0.1:{process_port}/readyz", timeout_s=30)
            gateway.wait_http(f"http://127.0.0.1:{gateway_port}/readyz")
            with (
                WsRecorder(f"ws://127.0.0.1:{gateway_port}/ws") as client,
                tickpipe_process(
                    ["ingest"],
                    {**env, "TICKPIPE_METRICS_PORT": str(ingest_port)},
                    tmp_path / "ingest.log",
                ) as ingest,
            ):
                wait_for(lambda: len(client.frames) >= 200, 30, "live updates before the cut")

                redis_proxy.cut(blackhole=blackhole)
                cut_s = time.monotonic()
                stored_at_cut = stored_count(db)
                process_ready = gateway_ready = (200, {})
                while time.monotonic() - cut_s < OUTAGE_S:
                    if process_ready[0] == 200:
                        process_ready = readyz(process_port)
                    if gateway_ready[0] == 200:
                        gateway_ready = readyz(gateway_port)
                    time.sleep(0.5)
                stored_in_outage = stored_count(db) - stored_at_cut
                late_frames = len(client.frames_after(cut_s + 1.0))

                redis_proxy.restore()
                restored_s = time.monotonic()
                wait_for(
                    lambda: client.first_arrival_after(restored_s) is not None,
                    20,
                    "updates on the same WebSocket after restore",
                )
                updates_back_s = (client.first_arrival_after(restored_s) or 0.0) - restored_s
                ready_again_s = wait_for(
                    lambda: readyz(gateway_port)[0] == readyz(process_port)[0] == 200,
                    10,
                    "both ready again",
                )
                ready_s = time.monotonic()
                wait_for(
                    lambda: len(client.frames_after(ready_s)) >= 100, 20, "live updates flow again"
                )
                assert ingest.terminate() == 0, ingest.log()
                accepted, _ = ingest_totals(ingest.log())
                wait_for_count(db, accepted, timeout_s=30)
                dropped_updates = metric(process_port, "tickpipe_updates_dropped_total")
                resubscribes = metric(gateway_port, "tickpipe_feed_resubscribes_total")
                outages = [
                    metric(port, "tickpipe_dependency_outages_total", dependency="redis")
                    for port in (process_port, gateway_port)
                ]
                still_open = client.closed_code is None
                peak_mb = [memory_mb(p.process.pid)["VmHWM"] for p in (processor, gateway)]
            for proc in (processor, gateway):
                assert proc.terminate() == 0, proc.log()

    result = audit(stored_rows(db))
    report(
        f"redis-outage-{'blackhole' if blackhole else 'reset'}",
        outage_s=OUTAGE_S,
        sent=accepted,
        **result.numbers(),
        stored_during_outage=stored_in_outage,
        frames_received=len(client.frames),
        updates_dropped=int(dropped_updates),
        feed_resubscribes=int(resubscribes),
        redis_outages_counted_process=int(outages[0]),
        redis_outages_counted_gateway=int(outages[1]),
        updates_back_after_s=updates_back_s,
        ready_again_after_s=ready_again_s,
        processor_vmhwm_mb=peak_mb[0],
        gateway_vmhwm_mb=peak_mb[1],
        duration_s=time.monotonic() - started_s,
    )
    assert stored_in_outage >= 0.8 * OUTAGE_S * 200, "storage went on at about full pace"
    assert late_frames == 0, "no updates while Redis was away (pub/sub is at most once)"
    assert process_ready[0] == 503
    assert "redis" in process_ready[1]["failing"], process_ready
    assert gateway_ready[0] == 503
    assert "redis" in gateway_ready[1]["failing"], gateway_ready
    assert still_open, "the WebSocket client kept its connection"
    assert dropped_updates > 0
    assert resubscribes >= 1
    assert outages == [1, 1], "one Redis outage, counted once by each service"
    assert result.stored == accepted
    assert result.duplicates == result.missing == result.sma_mismatches == 0
