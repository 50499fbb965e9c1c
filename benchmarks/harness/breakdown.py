"""Where the processor's wall time goes: the real Processor in-process, on the real adapters
(KafkaConsumer, PostgresStore, RedisPublisher), each port call timed, optionally under
pyinstrument.

    .venv/bin/python -m benchmarks.harness.breakdown --trades 300000 [--pyinstrument]

Starts its own broker and database like the harness; prints seconds per stage.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.harness import infra, pipeline, workload

DATABASE_NAME = "tickpipe_bench_breakdown"


class Timed:
    """A proxy that adds the wall time of each awaited method call to `seconds[name]`."""

    def __init__(self, target: Any, label: str, seconds: dict[str, float]) -> None:
        self._target = target
        self._label = label
        self._seconds = seconds

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started_s = time.perf_counter()
            try:
                return await attribute(*args, **kwargs)
            finally:
                self._seconds[f"{self._label}.{name}"] += time.perf_counter() - started_s

        return timed


async def _run(
    bootstrap: str, database_url: str, topic: str, count: int, profile_path: Path | None
) -> dict[str, float]:
    from tickpipe.adapters.bus.kafka import KafkaConsumer
    from tickpipe.adapters.pubsub.redis import open_redis
    from tickpipe.adapters.store.postgres import open_postgres_store
    from tickpipe.core.scoring import Scorer
    from tickpipe.services.processor import Processor
    from tickpipe.telemetry import metrics

    seconds: dict[str, float] = defaultdict(float)

    class TimedScorer(Scorer):
        def score(self, trade: Any) -> Any:
            started_s = time.perf_counter()
            try:
                return super().score(trade)
            finally:
                seconds["scorer.score"] += time.perf_counter() - started_s

    names = infra.RedisNames.for_run("breakdown")
    store = await open_postgres_store(database_url)
    publisher, feed = await open_redis(infra.REDIS_URL, names.channel, names.prefix, 20)
    consumer = KafkaConsumer(bootstrap, topic, group="bench-breakdown")
    processor = Processor(
        Timed(consumer, "consumer", seconds),
        Timed(store, "store", seconds),
        Timed(publisher, "publisher", seconds),
        TimedScorer(workload.SMA_WINDOW),
    )

    def stored() -> int:
        return int(metrics.trades_stored._value.get())

    from tickpipe.services.runtime import tune_interpreter

    tune_interpreter()  # as `tickpipe process` does
    stop = asyncio.Event()
    profiler = None
    if profile_path is not None:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.001)
    runner = asyncio.create_task(processor.run(stop))
    try:
        while stored() == 0:  # the group join and the first batch are not counted
            await asyncio.sleep(0.005)
        first_count, first_seconds = stored(), dict(seconds)
        if profiler is not None:
            profiler.start()
        started_s = time.perf_counter()
        while stored() < count:
            await asyncio.sleep(0.01)
        total_s = time.perf_counter() - started_s
        if profiler is not None:
            profiler.stop()
            assert profile_path is not None
            profile_path.write_text(profiler.output_text(unicode=False, color=False))
        stop.set()
        await runner
    finally:
        await consumer.close()
        await publisher.close()
        await feed.close()
        await store.close()
        await infra.delete_redis_keys(names)
    result = {name: spent_s - first_seconds.get(name, 0.0) for name, spent_s in seconds.items()}
    result["total"] = total_s
    result["trades"] = count - first_count
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=300_000)
    parser.add_argument("--pyinstrument", type=Path, help="write a pyinstrument profile here")
    args = parser.parse_args()
    processes = infra.Processes(Path("benchmarks/results/breakdown"))
    try:
        with infra.tansu_broker(processes) as bootstrap:
            database_url = infra.fresh_database(DATABASE_NAME)
            try:
                pipeline.migrate_database(database_url)
                topic = "bench-breakdown"
                infra.create_topics(bootstrap, [topic, f"{topic}.dlq"], 6)
                workload.prefill(bootstrap, topic, args.trades)
                seconds = asyncio.run(
                    _run(bootstrap, database_url, topic, args.trades, args.pyinstrument)
                )
            finally:
                infra.drop_database(DATABASE_NAME)
    finally:
        processes.stop_all()
    total_s, trades = seconds.pop("total"), int(seconds.pop("trades"))
    print(f"{trades:,} trades in {total_s:.2f} s: {trades / total_s:,.0f} trades/s")
    for name, spent_s in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"  {name:28s} {spent_s:7.2f} s  {100 * spent_s / total_s:5.1f} %")
    accounted_s = sum(v for k, v in seconds.items() if k != "scorer.score")
    print(f"  {'(rest: decode hand-off, loop)':28s} {total_s - accounted_s:7.2f} s")


if __name__ == "__main__":
    main()
