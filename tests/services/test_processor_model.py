"""A model-based test of the processor's exactly-once bookkeeping: polls, failing and hanging
writes, stops, crashes, revocations, losses and reassignments interleaved at random against a
scripted bus and store (tests/services/model.py).

Invariants: no commit ever covers a message that is not stored (or dead-lettered); a stop ends
within its budget; after recovery every trade is stored exactly once, with the SMA and signal an
uninterrupted run gives."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fixtures.trades import make_trade
from services.model import ModelBus, ModelStore, StoreMode, trade_key
from tickpipe.backoff import Backoff
from tickpipe.core.rolling import RollingMean
from tickpipe.core.scoring import Scorer
from tickpipe.core.signal import signal_from_comparison
from tickpipe.core.trade import Trade
from tickpipe.services.processor import CANCEL_WAIT_S, Processor

PARTITIONS = 3
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
WINDOW = 3
STOP_BUDGET_S = 0.05
NO_WAIT = Backoff(initial_s=0.0, max_s=0.0)  # retries paced by the loop: runs are deterministic
RECOVERY_TIMEOUT_S = 10.0


def partition_of(symbol: str) -> int:
    """Trades are keyed by symbol: a stream always lands in the same partition."""
    return SYMBOLS.index(symbol) % PARTITIONS


class ProcessorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.bus = ModelBus(PARTITIONS)
        self.store = ModelStore()
        self.bus.store = self.store
        self.produced: list[Trade] = []
        self.next_id: dict[str, int] = defaultdict(int)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.max_stop_s = 0.0
        self._start()

    # --- the process ---

    def _start(self) -> None:
        self.bus.restart_member()
        self.stop = asyncio.Event()
        self.processor = Processor(
            self.bus,
            self.store,
            _NoPublisher(),
            Scorer(WINDOW, max_streams=2),  # fewer than the streams: eviction is exercised too
            max_batch_trades=3,
            max_batch_age_s=0.0,
            backoff=NO_WAIT,
            stop_budget_s=STOP_BUDGET_S,
        )
        self.task = self.loop.create_task(self.processor.run(self.stop))

    def _run(self, iterations: int) -> None:
        """Lets the processor run for this many turns of the event loop."""
        for _ in range(iterations):
            self.loop.run_until_complete(asyncio.sleep(0))

    @rule(
        symbol=st.sampled_from(SYMBOLS),
        count=st.integers(1, 5),
        step=st.sampled_from(["1", "7", "0.5", "13"]),
        then_run=st.integers(0, 12),
    )
    def produce(self, symbol: str, count: int, step: str, then_run: int) -> None:
        for _ in range(count):
            self.next_id[symbol] += 1
            n = self.next_id[symbol]
            price = Decimal(100) + Decimal(step) * ((n * 5) % 7)
            trade = make_trade(n, symbol=symbol, price=price)
            self.produced.append(trade)
            self.bus.produce(partition_of(symbol), trade)
        self._run(then_run)

    @rule(partition=st.integers(0, PARTITIONS - 1))
    def produce_poison(self, partition: int) -> None:
        self.bus.produce(partition, None)

    @rule(iterations=st.integers(0, 40))
    def run_a_while(self, iterations: int) -> None:
        self._run(iterations)

    @rule(mode=st.sampled_from(StoreMode), apply_if_cancelled=st.booleans())
    def set_store_mode(self, mode: StoreMode, apply_if_cancelled: bool) -> None:
        self.store.mode = mode
        self.store.apply_if_cancelled = apply_if_cancelled

    @rule(applied=st.booleans())
    def hung_database_answers(self, applied: bool) -> None:
        self.store.release(applied=applied)

    @rule(
        partitions=st.sets(st.integers(0, PARTITIONS - 1), min_size=1),
        lost=st.booleans(),
        back_at_once=st.booleans(),
    )
    def revoke(self, partitions: set[int], lost: bool, back_at_once: bool) -> None:
        """A rebalance takes partitions away; maybe this member gets them straight back."""
        self.bus.revoke(partitions, lost=lost)
        if back_at_once:
            self.bus.assign(partitions)

    @rule(partitions=st.sets(st.integers(0, PARTITIONS - 1), min_size=1))
    def assign(self, partitions: set[int]) -> None:
        self.bus.assign(partitions)

    @precondition(lambda self: self.task is not None)
    @rule(answers_during_close=st.booleans())
    def stop_and_restart(self, answers_during_close: bool) -> None:
        """SIGTERM: the run ends within its budget, the bus closes (last revocation), and a new
        process starts from the committed offsets."""
        assert self.task is not None
        started_s = time.monotonic()
        self.stop.set()
        self.loop.run_until_complete(asyncio.wait({self.task}, timeout=5.0))
        elapsed_s = time.monotonic() - started_s
        assert self.task.done(), "the processor did not stop"
        self.task.result()
        self.max_stop_s = max(self.max_stop_s, elapsed_s)
        assert elapsed_s < STOP_BUDGET_S + CANCEL_WAIT_S + 1.0
        if answers_during_close:
            self.store.release(applied=True)
            self.store.mode = StoreMode.OK
        self.loop.run_until_complete(self.bus.close())
        self._abandon_tasks()
        self._start()

    @rule(applied=st.booleans())
    def crash_and_restart(self, applied: bool) -> None:
        """kill -9: nothing more is committed; hung writes may or may not have reached disk."""
        self.store.crash(applied=applied)
        self._abandon_tasks()
        self._start()

    def _abandon_tasks(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.wait(tasks, timeout=2.0))
        self.task = None

    @invariant()
    def nothing_committed_is_unstored(self) -> None:
        assert not self.bus.violations, self.bus.violations

    def teardown(self) -> None:
        try:
            self._recover_and_check()
        finally:
            self._abandon_tasks()
            self.loop.close()

    def _recover_and_check(self) -> None:
        """The database comes back, partitions return: everything ends stored exactly once,
        scored as an uninterrupted run would."""
        self.store.mode = StoreMode.OK
        self.store.release(applied=True)
        self.bus.assign(range(PARTITIONS))
        if self.task is None or self.task.done():
            self._abandon_tasks()
            self._start()
        deadline_s = time.monotonic() + RECOVERY_TIMEOUT_S
        while not self.bus.done():
            assert time.monotonic() < deadline_s, (
                f"not recovered: committed {self.bus.committed}, "
                f"log {[len(v) for v in self.bus.log.values()]}"
            )
            self._run(10)
        assert not self.bus.violations, self.bus.violations
        assert set(self.store.rows) == {trade_key(t) for t in self.produced}
        windows = {symbol: RollingMean(WINDOW) for symbol in SYMBOLS}
        for trade in self.produced:
            window = windows[trade.symbol]
            sma = window.push(trade.price)
            stored = self.store.rows[trade_key(trade)]
            assert stored.sma == sma, f"{trade_key(trade)}: sma {stored.sma} != {sma}"
            assert stored.signal == signal_from_comparison(window.compare(trade.price))


class _NoPublisher:
    async def publish(self, batch: object) -> None:
        return None

    async def close(self) -> None:
        return None


TestProcessorModel = ProcessorMachine.TestCase
TestProcessorModel.settings = settings(
    TestProcessorModel.settings, max_examples=150, stateful_step_count=40, deadline=None
)


# --- the interleavings that lost trades before the ledger, replayed step by step ---


def _scenario() -> ProcessorMachine:
    machine = ProcessorMachine()
    machine.produce("BTCUSDT", 3, "1", then_run=12)
    return machine


def test_a_stop_during_an_outage_commits_nothing_unstored_when_the_database_answers_at_close() -> (
    None
):
    """Batch N fails at the stop, batch N+1 is pending; the database answers during close:
    nothing past batch N is committed, and after a restart all is stored once."""
    machine = _scenario()
    machine.set_store_mode(StoreMode.FAIL, apply_if_cancelled=False)
    machine.produce("BTCUSDT", 3, "7", then_run=12)
    machine.produce("BTCUSDT", 3, "7", then_run=12)
    machine.stop_and_restart(answers_during_close=True)
    machine.nothing_committed_is_unstored()
    machine.teardown()


def test_a_rebalance_while_a_write_hangs_loses_nothing_when_the_partitions_come_back() -> None:
    """A write hangs, the partitions are revoked and given straight back: the redelivered trades
    are not mistaken for duplicates, and the hung write answering late changes nothing."""
    machine = _scenario()
    machine.set_store_mode(StoreMode.HANG, apply_if_cancelled=False)
    machine.produce("BTCUSDT", 3, "7", then_run=12)
    machine.produce("BTCUSDT", 3, "7", then_run=12)
    machine.revoke({0, 1, 2}, lost=False, back_at_once=True)
    machine.set_store_mode(StoreMode.OK, apply_if_cancelled=False)
    machine.run_a_while(40)
    machine.hung_database_answers(applied=True)
    machine.nothing_committed_is_unstored()
    machine.teardown()


def test_a_rebalance_while_writes_fail_loses_nothing() -> None:
    """Writes fail, trades wait in the pending batch, the partitions go and come back."""
    machine = _scenario()
    machine.set_store_mode(StoreMode.FAIL, apply_if_cancelled=False)
    machine.produce("BTCUSDT", 3, "7", then_run=12)
    machine.produce("BTCUSDT", 3, "13", then_run=12)
    machine.revoke({0}, lost=False, back_at_once=True)
    machine.set_store_mode(StoreMode.OK, apply_if_cancelled=False)
    machine.nothing_committed_is_unstored()
    machine.teardown()


def test_a_stop_while_the_database_hangs_ends_within_the_budget() -> None:
    """SIGTERM while a write hangs: the run ends within its budget, nothing unstored is
    committed, and the hung write that reached the disk anyway is not stored twice."""
    machine = _scenario()
    machine.set_store_mode(StoreMode.HANG, apply_if_cancelled=True)
    machine.produce("ETHUSDT", 4, "0.5", then_run=12)
    machine.stop_and_restart(answers_during_close=False)
    assert machine.max_stop_s < STOP_BUDGET_S + CANCEL_WAIT_S + 0.5
    machine.nothing_committed_is_unstored()
    machine.teardown()


def test_a_stop_while_a_window_rebuild_hangs_ends_within_the_budget() -> None:
    """Found by the model test: a window rebuild that started its attempt after the stop hung
    past the budget (its deadline was taken as a delay)."""
    machine = ProcessorMachine()
    machine.set_store_mode(StoreMode.FAIL, apply_if_cancelled=True)
    machine.produce("BTCUSDT", 5, "1", then_run=5)
    machine.revoke({2}, lost=True, back_at_once=False)
    machine.set_store_mode(StoreMode.HANG, apply_if_cancelled=True)
    machine.stop_and_restart(answers_during_close=False)
    machine.nothing_committed_is_unstored()
    machine.teardown()
