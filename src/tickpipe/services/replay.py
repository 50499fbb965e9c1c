"""Replay: recorded trades into a TradeSink at their original pace, N times faster, or as fast
as the sink takes them. Several files are merged by exchange time (each file keeps its order).

Nothing here deduplicates: a trade replayed twice is dropped by the processor (trade ids it
already scored) and by the store's unique key, so re-running a replay stores nothing twice.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from tickpipe.core.trade import Trade
from tickpipe.ports import InvalidLine, TradeRecording, TradeSink, UnreadableRecording

log = logging.getLogger(__name__)

AS_FAST_AS_POSSIBLE = math.inf
FLUSH_TIMEOUT_S = 30.0
MAX_REPORTED_INVALID = 100  # then only counted: a broken file must not flood the terminal
_MIN_SLEEP_S = 0.002
_PROGRESS_EVERY = 2_048  # trades between progress bar updates


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    files: tuple[str, ...]
    speed: float = 1.0  # x original pace; AS_FAST_AS_POSSIBLE for no pacing
    symbol: str | None = None  # of Binance CSV files not named like Binance's archives
    replay_format: str | None = None  # "jsonl" or "binance-csv"; None: from each file's name
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    files: int
    read: int  # valid trades read
    sent: int  # handed to the sink and delivered by it
    invalid: int  # lines skipped
    duration_s: float

    @property
    def trades_per_s(self) -> float:
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"replayed {self.files} file{'s' * (self.files != 1)}: {self.read:,} trades read,"
            f" {self.sent:,} sent, {self.invalid:,} invalid (skipped),"
            f" {self.duration_s:.2f} s, {self.trades_per_s:,.0f} trades/s"
        )


class ReplayFailed(RuntimeError):
    """A replay that cannot go on (unreadable or corrupt file, invalid line under --strict);
    one line. What was sent before stays sent: a replay repeated stores nothing twice."""


def _readable(items: Iterator[Trade | InvalidLine]) -> Iterator[Trade | InvalidLine]:
    try:
        yield from items
    except UnreadableRecording as exc:
        raise ReplayFailed(f"cannot replay {exc}") from None


def merged(files: Sequence[TradeRecording]) -> Iterator[Trade | InvalidLine]:
    """The files' lines merged by exchange time; an invalid line keeps its place in its file."""

    def keyed(
        index: int, lines: TradeRecording
    ) -> Iterator[tuple[int, int, int, Trade | InvalidLine]]:
        last_time_us = 0
        for seq, item in enumerate(lines):
            if isinstance(item, Trade):
                last_time_us = item.exchange_time_us
            yield last_time_us, index, seq, item

    streams = [keyed(index, lines) for index, lines in enumerate(files)]
    for *_, item in heapq.merge(*streams):
        yield item


class _Pacer:
    """Sleeps so that trade times map onto the wall clock divided by `speed`."""

    def __init__(self, speed: float, clock: Callable[[], float]) -> None:
        self._speed = speed
        self._clock = clock
        self._origin: tuple[int, float] | None = None  # (first exchange time us, wall s)

    def delay_s(self, exchange_time_us: int) -> float:
        if self._speed == AS_FAST_AS_POSSIBLE:
            return 0.0
        if self._origin is None:
            self._origin = (exchange_time_us, self._clock())
            return 0.0
        first_us, started_s = self._origin
        due_s = started_s + (exchange_time_us - first_us) / 1e6 / self._speed
        return due_s - self._clock()


async def replay_recordings(
    files: Sequence[TradeRecording],
    sink: TradeSink,
    *,
    speed: float = 1.0,
    strict: bool = False,
    progress: bool | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ReplaySummary:
    """Sends every valid trade of `files` to `sink`, paced by `speed`; skips and reports invalid
    lines (file:line: why), or raises ReplayFailed at the first one when `strict`. `progress`:
    a bar on stderr (None: only on a terminal)."""
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    started_s = clock()
    pacer = _Pacer(speed, clock)
    read = invalid = 0
    total_bytes = sum(f.size_bytes for f in files)
    with tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="replay",
        disable=None if progress is None else not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        shown_bytes = 0
        for item in _readable(merged(files)):
            if isinstance(item, InvalidLine):
                if strict:
                    raise ReplayFailed(f"{item} (--strict: stopped here)")
                invalid += 1
                if invalid <= MAX_REPORTED_INVALID:
                    bar.write(f"skipped {item}", file=sys.stderr)
                if invalid == MAX_REPORTED_INVALID:
                    bar.write("further invalid lines are counted, not shown", file=sys.stderr)
                continue
            delay_s = pacer.delay_s(item.exchange_time_us)
            if delay_s > _MIN_SLEEP_S:
                await asyncio.sleep(delay_s)
            await sink.send(item)
            read += 1
            if read % _PROGRESS_EVERY == 0:
                done_bytes = sum(f.bytes_read for f in files)
                bar.update(done_bytes - shown_bytes)
                shown_bytes = done_bytes
                bar.set_postfix_str(f"{read:,} trades", refresh=False)
                await asyncio.sleep(0)  # let the consumer side run even when nothing blocks
        bar.update(total_bytes - shown_bytes)
        bar.set_postfix_str(f"{read:,} trades")
    undelivered = await sink.flush(FLUSH_TIMEOUT_S)
    if undelivered:
        log.warning(
            "%d replayed trades were not delivered within %.0f s", undelivered, FLUSH_TIMEOUT_S
        )
    return ReplaySummary(
        files=len(files),
        read=read,
        sent=read - undelivered,
        invalid=invalid,
        duration_s=clock() - started_s,
    )
