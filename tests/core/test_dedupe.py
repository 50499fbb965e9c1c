"""Trade-id filters: replays dropped, gaps measured, memory bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tickpipe.core.dedupe import Admission, RecentIds, SequentialIds


def test_sequential_ids_drop_replays_and_measure_gaps() -> None:
    """<= the highest id is a duplicate; a jump counts the ids skipped; symbols are separate."""
    ids = SequentialIds()
    assert ids.admit("BTCUSDT", "10") == Admission(new=True)
    assert ids.admit("BTCUSDT", "11") == Admission(new=True)
    assert ids.admit("BTCUSDT", "11") == Admission(new=False)
    assert ids.admit("BTCUSDT", "9") == Admission(new=False)
    assert ids.admit("BTCUSDT", "15") == Admission(new=True, missing=3)
    assert ids.admit("ETHUSDT", "3") == Admission(new=True)


def test_sequential_ids_follow_a_venue_that_restarts_its_sequence() -> None:
    """An id far below the highest one is a restarted sequence (testnets), not a replay."""
    ids = SequentialIds(reset_after=1_000)
    ids.admit("BTCUSDT", "5000000")
    assert ids.admit("BTCUSDT", "1") == Admission(new=True)
    assert ids.admit("BTCUSDT", "2") == Admission(new=True)


def test_recent_ids_forget_the_oldest_beyond_the_window() -> None:
    """Within the window an id is seen once; memory stays at `window` ids per symbol."""
    ids = RecentIds(window=3)
    for trade_id in ("a", "b", "c"):
        assert ids.admit("BTCUSD", trade_id).new
    assert not ids.admit("BTCUSD", "a").new
    assert ids.admit("BTCUSD", "d").new  # evicts "a"
    assert ids.admit("BTCUSD", "a").new
    assert ids.admit("ETHUSD", "b").new


@given(
    sent=st.integers(1, 200),
    cuts=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 60)), max_size=5),
)
def test_an_increasing_stream_with_replays_comes_out_once_in_order(
    sent: int, cuts: list[tuple[int, int]]
) -> None:
    """Replaying up to 60 earlier trades at any points never emits a trade twice or loses one."""
    stream = list(range(1, sent + 1))
    for position, replayed in sorted(cuts, reverse=True):
        position = min(position, len(stream))
        stream[position:position] = stream[max(0, position - replayed) : position]
    for ids in (SequentialIds(), RecentIds(window=100)):
        emitted = [n for n in stream if ids.admit("X", str(n)).new]
        assert emitted == list(range(1, sent + 1))


def test_forgotten_symbols_admit_their_ids_again() -> None:
    """After forget, an id seen before is new again for that symbol only (a revoked stream)."""
    recent = RecentIds(window=8)
    assert recent.admit("A", "1").new
    assert recent.admit("B", "1").new
    recent.forget(["A"])
    assert recent.admit("A", "1").new
    assert not recent.admit("B", "1").new
    assert len(recent) == 2
