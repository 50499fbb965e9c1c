"""Which bus offsets may be committed: the bookkeeping behind "nothing committed is unstored".

A partition delivers its messages in offset order; the processor hands them to the store in
batches, and a batch is *done* once the store holds its trades (and the dead-letter topic its
poison messages). The offset a partition may commit is one past the longest done prefix of what it
delivered: a batch that is pending, in flight, failing, given up or cancelled stops it, however
many later batches are done. Revoking (or losing) a partition forgets it: a batch that completes
after its partition went counts for nothing, and whoever owns the partition next reads it again
from the committed offset.

No I/O and no clock: the processor owns one `OffsetLedger` on its event loop; the bus's rebalance
callbacks reach it only through the processor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

Offsets = dict[int, int]  # partition -> the next offset to read (what a commit stores)


@dataclass(eq=False, slots=True)
class _Span:
    """The messages of one batch in one partition: offsets first..last, in delivery order."""

    first: int
    last: int
    done: bool = False
    live: bool = True  # False once its partition was revoked


@dataclass(eq=False, slots=True)
class LedgerBatch:
    """A batch registered with the ledger; `OffsetLedger.done` marks it stored."""

    spans: tuple[_Span, ...] = field(default=())


class OffsetLedger:
    """Per partition, the spans of the batches handed on, and what was committed."""

    __slots__ = ("_committed", "_done_up_to", "_spans")

    def __init__(self) -> None:
        self._spans: dict[int, deque[_Span]] = {}
        self._done_up_to: dict[int, int] = {}  # one past the last offset of the done prefix
        self._committed: dict[int, int] = {}

    def add_batch(self, ranges: Mapping[int, tuple[int, int]]) -> LedgerBatch:
        """Registers the next batch: per partition, its (first, last) offsets. Batches must be
        added in delivery order."""
        spans = []
        for partition, (first, last) in ranges.items():
            if first > last:
                raise ValueError(f"partition {partition}: first offset {first} > last {last}")
            span = _Span(first, last)
            self._spans.setdefault(partition, deque()).append(span)
            spans.append(span)
        return LedgerBatch(tuple(spans))

    def done(self, batch: LedgerBatch) -> None:
        """The batch is stored: its spans no longer hold their partitions' commits back."""
        for span in batch.spans:
            span.done = True

    def owns(self, batch: LedgerBatch) -> bool:
        """False when every partition of the batch was revoked since it was added: storing it
        can no longer move any commit (an empty batch is always owned)."""
        return not batch.spans or any(span.live for span in batch.spans)

    def committable(self) -> Offsets:
        """Per partition, the offset that may be committed now, where it moved past the last
        commit recorded with `committed`."""
        offsets: Offsets = {}
        for partition, spans in self._spans.items():
            done_up_to = self._done_up_to.get(partition)
            while spans and spans[0].done:
                span = spans.popleft()
                if done_up_to is None or span.last + 1 > done_up_to:
                    done_up_to = span.last + 1
            if done_up_to is None:
                continue
            self._done_up_to[partition] = done_up_to
            # Delivery order is offset order; should a partition ever rewind, a pending span
            # below the done prefix still holds the commit back.
            held = min((s.first for s in spans if not s.done), default=done_up_to)
            offset = min(done_up_to, held)
            if offset > self._committed.get(partition, -1):
                offsets[partition] = offset
        return offsets

    def committed(self, offsets: Mapping[int, int]) -> None:
        """Records a commit that succeeded."""
        for partition, offset in offsets.items():
            if offset > self._committed.get(partition, -1):
                self._committed[partition] = offset

    def revoke(self, partitions: Iterable[int]) -> Offsets:
        """The partitions are being taken away: returns what may still be committed for them,
        then forgets them."""
        wanted = set(partitions)
        offsets = {p: o for p, o in self.committable().items() if p in wanted}
        self.lose(wanted)
        return offsets

    def lose(self, partitions: Collection[int]) -> None:
        """The partitions are gone (maybe to another member already): forgets them."""
        for partition in partitions:
            for span in self._spans.pop(partition, ()):
                span.live = False
            self._done_up_to.pop(partition, None)
            self._committed.pop(partition, None)


def offsets_after(partition_offsets: Iterable[tuple[int, int]]) -> Offsets:
    """Per partition, one past the highest offset given: the commit that covers them all."""
    offsets: Offsets = {}
    for partition, offset in partition_offsets:
        if offset >= offsets.get(partition, 0):
            offsets[partition] = offset + 1
    return offsets
