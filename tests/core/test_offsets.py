"""OffsetLedger: a commit never passes a message that is not done, against a naive reference."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tickpipe.core.offsets import OffsetLedger, offsets_after


def test_a_done_batch_after_a_pending_one_does_not_move_the_commit() -> None:
    """Batch 2 stored while batch 1 is not: nothing is committable until batch 1 is done."""
    ledger = OffsetLedger()
    first = ledger.add_batch({0: (0, 4)})
    second = ledger.add_batch({0: (5, 9)})
    ledger.done(second)
    assert ledger.committable() == {}
    ledger.done(first)
    assert ledger.committable() == {0: 10}


def test_a_done_batch_after_a_pending_one_is_held_back_after_a_done_prefix_too() -> None:
    """Batch 1 stored and offered; batch 2 pending, batch 3 stored: the offer stays at batch 1."""
    ledger = OffsetLedger()
    ledger.done(ledger.add_batch({0: (0, 4)}))
    assert ledger.committable() == {0: 5}
    ledger.add_batch({0: (5, 9)})
    ledger.done(ledger.add_batch({0: (10, 14)}))
    assert ledger.committable() == {0: 5}


def test_partitions_commit_independently() -> None:
    """A pending batch of one partition does not hold another partition back."""
    ledger = OffsetLedger()
    ledger.add_batch({0: (0, 4)})
    ledger.done(ledger.add_batch({1: (0, 2)}))
    assert ledger.committable() == {1: 3}


def test_a_recorded_commit_is_not_offered_again() -> None:
    """Once committed, an offset is offered again only after it moves."""
    ledger = OffsetLedger()
    ledger.done(ledger.add_batch({0: (0, 4)}))
    ledger.committed(ledger.committable())
    assert ledger.committable() == {}


def test_revoking_returns_the_stored_prefix_then_forgets_the_partition() -> None:
    """A revoked partition hands over what is stored; its in-flight batch no longer counts."""
    ledger = OffsetLedger()
    ledger.done(ledger.add_batch({0: (0, 4)}))
    in_flight = ledger.add_batch({0: (5, 9)})
    assert ledger.revoke([0]) == {0: 5}
    assert not ledger.owns(in_flight)
    ledger.done(in_flight)
    assert ledger.committable() == {}


def test_after_a_reassignment_the_partition_starts_afresh() -> None:
    """Batches from before a loss cannot complete commits of the new assignment."""
    ledger = OffsetLedger()
    stale = ledger.add_batch({0: (0, 9)})
    ledger.lose([0])
    fresh = ledger.add_batch({0: (0, 4)})
    ledger.done(stale)
    assert ledger.committable() == {}
    ledger.done(fresh)
    assert ledger.committable() == {0: 5}


def test_a_batch_is_owned_while_one_of_its_partitions_is() -> None:
    """Revoking one of two partitions leaves the batch owned (its other half still counts)."""
    ledger = OffsetLedger()
    batch = ledger.add_batch({0: (0, 1), 1: (0, 1)})
    ledger.revoke([0])
    assert ledger.owns(batch)
    ledger.done(batch)
    assert ledger.committable() == {1: 2}


def test_an_inverted_span_is_refused() -> None:
    """A span whose first offset is past its last is a caller bug: ValueError."""
    with pytest.raises(ValueError, match="first offset"):
        OffsetLedger().add_batch({0: (5, 4)})


def test_offsets_after_is_one_past_the_highest() -> None:
    """The commit covering a set of messages is one past the highest offset per partition."""
    assert offsets_after([(0, 3), (1, 7), (0, 9), (0, 2)]) == {0: 10, 1: 8}


# --- against a naive reference ---

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sets(st.integers(0, 2), min_size=1), st.integers(1, 4)),
        st.tuples(st.just("done"), st.integers(0, 30)),
        st.tuples(st.just("revoke"), st.sets(st.integers(0, 2), min_size=1)),
        st.tuples(st.just("commit")),
    ),
    max_size=60,
)


@example([("add", {0}, 2), ("done", 0), ("add", {0}, 2), ("add", {0}, 2), ("done", 2)])
@given(_ops)
def test_the_ledger_agrees_with_a_naive_reference(ops: list[tuple[object, ...]]) -> None:
    """Whatever the order of adds, completions, revocations and commits, the ledger offers
    exactly the lowest not-done offset of each live partition (or one past its last done one)."""
    ledger = OffsetLedger()
    batches = []  # (ledger batch, {partition: offsets}, generation per partition)
    generation = dict.fromkeys(range(3), 0)
    next_offset = dict.fromkeys(range(3), 0)
    messages: dict[int, dict[int, bool]] = {p: {} for p in range(3)}  # offset -> done
    committed: dict[int, int] = {}
    for op in ops:
        if op[0] == "add":
            _, partitions, size = op
            ranges = {}
            for p in sorted(partitions):  # type: ignore[call-overload]
                first = next_offset[p] + (size % 2)  # sometimes a gap, as compaction leaves
                ranges[p] = (first, first + size - 1)  # type: ignore[operator]
                next_offset[p] = first + size  # type: ignore[operator]
            batch = ledger.add_batch(ranges)
            batches.append((batch, ranges, dict(generation)))
            for p, (first, last) in ranges.items():
                messages[p].update(dict.fromkeys(range(first, last + 1), False))
        elif op[0] == "done" and batches:
            batch, ranges, born = batches[op[1] % len(batches)]  # type: ignore[operator]
            ledger.done(batch)
            for p, (first, last) in ranges.items():
                if born[p] == generation[p]:
                    messages[p].update(dict.fromkeys(range(first, last + 1), True))
        elif op[0] == "revoke":
            for p in op[1]:  # type: ignore[attr-defined]
                generation[p] += 1
                messages[p] = {}
                committed.pop(p, None)
            ledger.revoke(op[1])  # type: ignore[arg-type]
        elif op[0] == "commit":
            offered = ledger.committable()
            ledger.committed(offered)
            committed.update(offered)
        expected = {}
        for p, done in messages.items():
            pending = [o for o, is_done in done.items() if not is_done]
            done_offsets = [o for o, is_done in done.items() if is_done]
            if pending:
                # Only a done *prefix* may be committed: up to the first pending message.
                prefix = [o for o in done_offsets if o < min(pending)]
                offset = max(prefix) + 1 if prefix else None
            else:
                offset = max(done_offsets) + 1 if done_offsets else None
            if offset is not None and offset > committed.get(p, -1):
                expected[p] = offset
        assert ledger.committable() == expected
