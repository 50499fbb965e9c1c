"""The processing half of `tickpipe run` on the embedded default, as a process of its own:
a pre-filled in-process bus -> the processor -> the SQLite store + the in-process pub/sub, built
with `run`'s own adapters and settings (`commands.build_processor`, `wiring.open_store`,
`wiring.open_updates(embedded=True)`, `queued_publisher`, `MemoryBus`), and one feed subscriber
in place of the gateway's, counting the updates it is handed.

    python -m benchmarks.harness.embedded_job DATABASE_URL TRADES

Prints `ready` once the bus holds every trade (the processor then starts at once), and one line
`result {"delivered": N}` once it has stored and published them all; then waits for SIGTERM, so
that the harness can read its CPU time and peak RSS from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import orjson

from benchmarks.harness import workload
from tickpipe import commands, wiring
from tickpipe.adapters.bus.memory import MemoryBus
from tickpipe.config import load_settings
from tickpipe.ports import UpdateFeed
from tickpipe.services.publishing import queued_publisher
from tickpipe.services.runtime import tune_interpreter


async def _count_updates(feed: UpdateFeed, delivered: list[int]) -> None:
    async for frames in feed.frames():
        delivered[0] += len(frames)


async def main(database_url: str, trades: int) -> None:
    settings = load_settings({"database_url": database_url, "sma_window": workload.SMA_WINDOW})
    tune_interpreter()  # as `run_service` does before any trade arrives
    await wiring.migrate_store(settings.database_url)
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(wiring.open_store(settings.database_url))
        updates = await stack.enter_async_context(
            wiring.open_updates(settings, "run", embedded=True)
        )
        publisher = await stack.enter_async_context(queued_publisher(updates.publisher))
        bus = MemoryBus(trades)  # `run`'s bus, only large enough to hold the whole workload
        for trade in workload.trades(trades):
            await bus.send(trade)
        delivered = [0]
        counter = asyncio.create_task(_count_updates(updates.feed, delivered))
        # `_processor` before it was named build_processor (A/B runs against older trees).
        build = getattr(commands, "build_processor", None) or commands._processor
        processor = build(settings, bus, store, publisher)
        print("ready", flush=True)
        stop = asyncio.Event()
        stop.set()  # with drain: process everything the bus holds, then return
        await processor.run(stop, drain=True)
        await publisher.drain(10.0)
        for _ in range(100):  # the subscriber takes the last batch
            if delivered[0] >= trades:
                break
            await asyncio.sleep(0.01)
        counter.cancel()
    print("result", orjson.dumps({"delivered": delivered[0]}).decode(), flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
