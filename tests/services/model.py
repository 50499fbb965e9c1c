"""A scripted bus and store for the processor's model tests: a partitioned log with a consumer
group of one (revocations, losses and reassignments on demand), and a store whose writes can
fail or hang until released. Every commit is audited against what the store holds."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.trade import Trade
from tickpipe.ports import BusMessage, RevokeHandler

TradeKey = tuple[str, str, str]  # exchange, symbol, trade_id


def trade_key(trade: Trade) -> TradeKey:
    return (trade.exchange, trade.symbol, trade.trade_id)


class ModelBus:
    """Partitions of messages; one consumer holding `assigned`, reading from `position`."""

    def __init__(self, partitions: int) -> None:
        self.log: dict[int, list[BusMessage]] = {p: [] for p in range(partitions)}
        self.committed = dict.fromkeys(self.log, 0)
        self.position = dict.fromkeys(self.log, 0)
        self.assigned: set[int] = set(self.log)
        self.dead: list[BusMessage] = []
        self.handler: RevokeHandler | None = None
        self.store: ModelStore | None = None  # to audit commits against
        self.violations: list[str] = []

    def produce(self, partition: int, trade: Trade | None) -> None:
        log = self.log[partition]
        key = trade.symbol.encode() if trade else b"x"
        error = None if trade else "not a tickpipe.v1.Trade"
        log.append(BusMessage(trade, error, key, b"", partition, len(log)))

    async def poll(self, max_messages: int, timeout_s: float) -> Sequence[BusMessage]:
        await asyncio.sleep(0)
        taken: list[BusMessage] = []
        for partition in sorted(self.assigned):
            log, start = self.log[partition], self.position[partition]
            chunk = log[start : start + max_messages - len(taken)]
            self.position[partition] = start + len(chunk)
            taken += chunk
        return taken

    async def commit(self, offsets: Mapping[int, int]) -> None:
        await asyncio.sleep(0)
        self._commit(offsets)

    def _commit(self, offsets: Mapping[int, int]) -> None:
        for partition, offset in offsets.items():
            if partition not in self.assigned:
                continue  # as the Kafka adapter does: the new owner commits it
            self._audit(partition, offset)
            self.committed[partition] = offset

    def _audit(self, partition: int, offset: int) -> None:
        assert self.store is not None
        for message in self.log[partition][:offset]:
            if message.trade is None:
                if message not in self.dead:
                    self.violations.append(f"p{partition}@{message.offset} committed, not in DLQ")
            elif trade_key(message.trade) not in self.store.rows:
                self.violations.append(f"p{partition}@{message.offset} committed, not stored")

    async def dead_letter(self, messages: Sequence[BusMessage]) -> None:
        await asyncio.sleep(0)
        self.dead.extend(messages)

    async def serve_group(self) -> None:
        await asyncio.sleep(0)

    def on_revoke(self, handler: RevokeHandler) -> None:
        self.handler = handler

    def revoke(self, partitions: Collection[int], *, lost: bool = False) -> None:
        """The group takes these partitions away (they go to nobody until `assign`)."""
        taken = set(partitions) & self.assigned
        if not taken:
            return
        offsets = self.handler(taken, lost) if self.handler else {}
        if not lost:
            self._commit({p: o for p, o in offsets.items() if p in taken})
        self.assigned -= taken

    def assign(self, partitions: Collection[int]) -> None:
        for partition in partitions:
            if partition not in self.assigned:
                self.assigned.add(partition)
                self.position[partition] = self.committed[partition]

    def restart_member(self) -> None:
        """A new process joins with every partition, from the committed offsets."""
        self.assigned = set(self.log)
        self.position = dict(self.committed)
        self.handler = None

    async def close(self) -> None:
        self.revoke(set(self.assigned))

    def done(self) -> bool:
        return all(self.committed[p] == len(log) for p, log in self.log.items())


class StoreMode(Enum):
    OK = "ok"
    FAIL = "fail"
    HANG = "hang"


@dataclass
class _Hung:
    batch: list[ScoredTrade]
    released: asyncio.Future[bool]
    applied_if_cancelled: bool


@dataclass
class ModelStore:
    """Idempotent on the trade key; per stream, rows in processing (insertion) order."""

    mode: StoreMode = StoreMode.OK
    rows: dict[TradeKey, ScoredTrade] = field(default_factory=dict)
    streams: dict[tuple[str, str], list[Trade]] = field(default_factory=lambda: defaultdict(list))
    hung: list[_Hung] = field(default_factory=list)
    apply_if_cancelled: bool = False
    writes: int = 0

    async def write(self, batch: Sequence[ScoredTrade]) -> int:
        await asyncio.sleep(0)
        self.writes += 1
        if self.mode is StoreMode.FAIL:
            raise ConnectionError("database is down")
        if self.mode is StoreMode.HANG:
            hung = _Hung(
                list(batch), asyncio.get_running_loop().create_future(), self.apply_if_cancelled
            )
            self.hung.append(hung)
            try:
                applied = await hung.released
            except asyncio.CancelledError:
                if hung.applied_if_cancelled:  # the server committed; the answer never came
                    self.apply(batch)
                raise
            if not applied:
                raise ConnectionError("connection reset")
        return self.apply(batch)

    def apply(self, batch: Sequence[ScoredTrade]) -> int:
        new = 0
        for scored in batch:
            key = trade_key(scored.trade)
            if key not in self.rows:
                self.rows[key] = scored
                self.streams[scored.trade.key].append(scored.trade)
                new += 1
        return new

    def release(self, *, applied: bool) -> None:
        """The hung server answers: each hung write either commits or fails."""
        hung, self.hung = self.hung, []
        for entry in hung:
            if not entry.released.done():
                if applied:
                    self.apply(entry.batch)
                entry.released.set_result(applied)

    def crash(self, *, applied: bool) -> None:
        """The processor died: its hung writes either made it to disk or not."""
        hung, self.hung = self.hung, []
        for entry in hung:
            if applied:
                self.apply(entry.batch)
            entry.applied_if_cancelled = False

    async def window_prices(self, trade: Trade, count: int) -> list[Decimal]:
        await asyncio.sleep(0)
        if self.mode is StoreMode.FAIL:
            raise ConnectionError("database is down")
        if self.mode is StoreMode.HANG:
            hung = _Hung([], asyncio.get_running_loop().create_future(), False)
            self.hung.append(hung)
            if not await hung.released:
                raise ConnectionError("connection reset")
        stream = self.streams[trade.key]
        ids = [t.trade_id for t in stream]
        before = stream[: ids.index(trade.trade_id)] if trade.trade_id in ids else stream
        return [t.price for t in before[-count:]] if count > 0 else []
