"""Where a trade's latency goes inside the processor: the real Processor in-process on the real
adapters (KafkaConsumer, PostgresStore, RedisPublisher behind the queued publisher), fed by the
real KafkaSink at a steady rate in 10 ms bursts (like the simulated market), with the broker's
bare round trip measured the same way beside it.

    .venv/bin/python -m benchmarks.harness.latency_breakdown [--rate 1000] [--seconds 15]

For every trade, now - ingest_time_us when the processor's poll hands it over, when its batch's
write starts, when the batch is handed to the publisher and when Redis has it; per batch, the
write and the offset commit. Starts its own broker and database like the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import broker, hist, infra, pipeline, workload

DATABASE_NAME = "tickpipe_bench_latency"
WARMUP_S = 5.0
BURST_S = 0.01


def _since_ingest_ms(trade: Any) -> float:
    return (time.time_ns() // 1000 - trade.ingest_time_us) / 1000


async def _run(bootstrap: str, database_url: str, topic: str, rate: float, seconds: float) -> Any:
    from tickpipe.adapters.bus.kafka import KafkaConsumer, KafkaSink
    from tickpipe.adapters.exchanges.simulated import SimulatedMarket
    from tickpipe.adapters.pubsub.redis import open_redis
    from tickpipe.adapters.store.postgres import open_postgres_store
    from tickpipe.core.scoring import ScoredTrade, Scorer
    from tickpipe.ports import BusMessage
    from tickpipe.services.processor import Processor
    from tickpipe.services.publishing import queued_publisher

    samples: dict[str, Any] = defaultdict(hist.new_histogram)
    measuring = [False]

    def record(stage: str, value_ms: float) -> None:
        if measuring[0]:
            hist.record_us(samples[stage], value_ms * 1000)

    names = infra.RedisNames.for_run("latency-breakdown")
    store = await open_postgres_store(database_url)
    publisher, feed = await open_redis(infra.REDIS_URL, names.channel, names.prefix, 20)
    consumer = KafkaConsumer(bootstrap, topic, group="bench-latency-breakdown")
    sink = KafkaSink(bootstrap, topic)

    class TimedConsumer:
        def __getattr__(self, name: str) -> Any:
            return getattr(consumer, name)

        async def poll(self, max_messages: int, timeout_s: float) -> Sequence[BusMessage]:
            messages = await consumer.poll(max_messages, timeout_s)
            for message in messages:
                if message.trade is not None:
                    record("1 polled", _since_ingest_ms(message.trade))
            return messages

        async def commit(self, offsets: Mapping[int, int]) -> None:
            started_s = time.perf_counter()
            await consumer.commit(offsets)
            record("offset commit (per batch)", 1000 * (time.perf_counter() - started_s))

    class TimedStore:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def write(self, batch: Sequence[ScoredTrade]) -> int:
            for scored in batch:
                record("2 write starts", _since_ingest_ms(scored.trade))
            started_s = time.perf_counter()
            inserted = await store.write(batch)
            record("store write (per batch)", 1000 * (time.perf_counter() - started_s))
            record("trades per batch", len(batch))  # a count, kept as if milliseconds
            return inserted

    class TimedPublisher:
        async def publish(self, batch: Sequence[ScoredTrade]) -> None:
            for scored in batch:
                record("3 handed to publisher", _since_ingest_ms(scored.trade))
            await publisher.publish(batch)
            for scored in batch:
                record("4 in Redis", _since_ingest_ms(scored.trade))

        async def close(self) -> None:
            pass

    try:
        async with queued_publisher(TimedPublisher()) as queued:  # type: ignore[arg-type]
            processor = Processor(TimedConsumer(), TimedStore(), queued, Scorer(20))  # type: ignore[arg-type]
            stop = asyncio.Event()
            runner = asyncio.create_task(processor.run(stop))
            market = SimulatedMarket(workload.SYMBOLS, 1.0, workload.SEED)
            started_s = time.monotonic()
            sent = 0
            while (elapsed_s := time.monotonic() - started_s) < WARMUP_S + seconds:
                measuring[0] = elapsed_s >= WARMUP_S
                now_us = time.time_ns() // 1000
                for _ in range(int(elapsed_s * rate) + 1 - sent):
                    await sink.send(market.next_trade(now_us))
                    sent += 1
                await asyncio.sleep(BURST_S)
            await asyncio.sleep(1.0)
            stop.set()
            await runner
    finally:
        await sink.close()
        await consumer.close()
        await publisher.close()
        await feed.close()
        await store.close()
        await infra.delete_redis_keys(names)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="trades/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured, after 5 s warm-up")
    args = parser.parse_args()
    processes = infra.Processes(Path("benchmarks/results/latency-breakdown"))
    try:
        with infra.tansu_broker(processes) as bootstrap:
            database_url = infra.fresh_database(DATABASE_NAME)
            try:
                pipeline.migrate_database(database_url)
                rtt_topic = "bench-latency-rtt"
                infra.create_topics(bootstrap, [rtt_topic], 6)
                rtt = broker.round_trip(
                    bootstrap, rtt_topic, rate_per_s=args.rate, duration_s=args.seconds
                )
                topic = "bench-latency"
                infra.create_topics(bootstrap, [topic, f"{topic}.dlq"], 6)
                samples = asyncio.run(_run(bootstrap, database_url, topic, args.rate, args.seconds))
            finally:
                infra.drop_database(DATABASE_NAME)
    finally:
        processes.stop_all()
    print(f"at {args.rate:,.0f} trades/s, {args.seconds:g} s after {WARMUP_S:g} s of warm-up")
    label = "broker round trip (bare client)"
    print(f"  {label:34s} p50 {rtt['p50']:7.1f}  p99 {rtt['p99']:7.1f} ms")
    for stage in sorted(samples):
        p = hist.percentiles_ms(samples[stage])
        unit = "" if stage == "trades per batch" else " ms"
        print(f"  {stage:34s} p50 {p['p50']:7.1f}  p99 {p['p99']:7.1f}{unit}")


if __name__ == "__main__":
    main()
