"""Scenario (issue 12): the consumer group changes while PostgreSQL hangs (accepts, never
answers) for 15 s, longer than a revoke callback may take.

Two processors share the stream through one fault proxy to PostgreSQL. The proxy blackholes;
a third processor joins (it reaches the database directly: the partition is between the old
members and the database) and one of the first two is stopped with SIGTERM, both during the
hang. Partitions move while writes hang: whatever moves must not be committed past unstored
trades, and a partition that comes back to a member must not be taken for duplicates.
The group's committed offsets are checked against the store at each step."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from faults.harness import (
    CommittedOffsets,
    OffsetCheck,
    audit,
    check_committed_offsets,
    ingest_totals,
    metric,
    migrate,
    pipeline_env,
    proxy_for,
    report,
    seconds_until_stored,
    sigterm_and_wait,
    stored_count,
    stored_rows,
    trades_produced_until,
    via,
    wait_for,
    wait_for_count,
)
from fixtures.procs import Tickpipe, free_port

pytestmark = [pytest.mark.infra, pytest.mark.slow]

EXIT_BUDGET_S = 10.0
RATE_PER_S = 300
HANG_S = 15.0
JOIN_AFTER_S = 2.0  # into the hang: writes are stuck by then
LEAVE_AFTER_S = 5.0  # its 10 s to stop end before the hang does


def _processor(env: dict[str, str], tmp_path: Path, name: str) -> tuple[Tickpipe, int]:
    port = free_port()
    proc = Tickpipe(["process"], {**env, "TICKPIPE_METRICS_PORT": str(port)}, tmp_path / name)
    return proc, port


def _stored_by(port: int) -> float:
    return metric(port, "tickpipe_trades_stored_total")


@pytest.mark.timeout(150)
def test_members_join_and_leave_while_postgres_hangs_and_nothing_is_lost(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """A join and a leave during a 15 s hang: no committed offset ever covers an unstored
    trade, the leaver exits within 10 s, and in the end every trade is stored exactly once
    with the SMAs of an uninterrupted run."""
    started_s = time.monotonic()
    db = empty_postgres_url
    env = pipeline_env(
        db, kafka_bootstrap, kafka_topic, redis_url, redis_names, TICKPIPE_SIM_RATE=str(RATE_PER_S)
    )
    migrate(env)
    checks: dict[str, OffsetCheck] = {}
    with (
        CommittedOffsets(kafka_bootstrap, kafka_topic, env["TICKPIPE_KAFKA_GROUP"]) as offsets,
        proxy_for(db) as database,
        contextlib.ExitStack() as cleanup,
    ):
        hung_env = {**env, "TICKPIPE_DATABASE_URL": via(db, database)}
        (first, first_port), (leaver, leaver_port) = (
            _processor(hung_env, tmp_path, "process-a.log"),
            _processor(hung_env, tmp_path, "process-b.log"),
        )
        cleanup.callback(first.kill)
        cleanup.callback(leaver.kill)
        for proc, port in ((first, first_port), (leaver, leaver_port)):
            proc.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=30)
        ingest = Tickpipe(
            ["ingest"], {**env, "TICKPIPE_METRICS_PORT": str(free_port())}, tmp_path / "ingest.log"
        )
        cleanup.callback(ingest.kill)
        wait_for(
            lambda: _stored_by(first_port) > 0 and _stored_by(leaver_port) > 0,
            30,
            "both members storing (sharing the partitions)",
        )
        wait_for(lambda: stored_count(db) >= 600, 30, "trades flowing")

        database.cut(blackhole=True)
        hung_s = time.monotonic()
        time.sleep(JOIN_AFTER_S)  # let the hang bite: writes in flight, batches behind them
        joiner, joiner_port = _processor(env, tmp_path, "process-c.log")
        cleanup.callback(joiner.kill)
        joiner_ready = f"http://127.0.0.1:{joiner_port}/readyz"
        restored: list[tuple[float, float]] = []  # (time.time(), time.monotonic())

        def end_the_hang() -> None:
            """After HANG_S, and not before the joiner is up (a loaded machine is slow to start
            it): the join must happen during the hang."""
            try:
                time.sleep(max(0.0, hung_s + HANG_S - time.monotonic()))
                with (
                    contextlib.suppress(AssertionError),  # the main thread fails on it
                    CommittedOffsets(kafka_bootstrap, kafka_topic, offsets.group) as own,
                ):
                    joiner.wait_http(joiner_ready, timeout_s=30)
                    checks["joined"] = check_committed_offsets(own, db)
            finally:
                database.restore()
                restored.append((time.time(), time.monotonic()))

        hang_ender = threading.Thread(target=end_the_hang, daemon=True)
        hang_ender.start()
        # The members serve the group while their writes hang, so the join completes within
        # the hang; the leave comes after it. (A member leaving while Tansu is still collecting
        # the join left its group without any assignment for good: a broker quirk, not ours.)
        wait_for(
            lambda: "assigned partitions" in joiner.log(),
            HANG_S,
            "the joiner got partitions while the database hangs",
        )
        time.sleep(max(0.0, hung_s + LEAVE_AFTER_S - time.monotonic()))
        left = sigterm_and_wait(leaver, kill_after_s=20)
        left_in_hang = not restored
        checks["left"] = check_committed_offsets(offsets, db)
        hang_ender.join(HANG_S + 60)
        joiner.wait_http(joiner_ready, timeout_s=1)
        (restored_wall_s, restored_s), hang_s = restored[0], restored[0][1] - hung_s
        backlog = trades_produced_until(kafka_bootstrap, kafka_topic, restored_wall_s)
        stored_s = seconds_until_stored(db, backlog, 40)
        recovery_s = None if stored_s is None else time.monotonic() - restored_s
        checks["recovered"] = check_committed_offsets(offsets, db)

        assert ingest.terminate() == 0, ingest.log()
        accepted, _ = ingest_totals(ingest.log())
        with contextlib.suppress(AssertionError):  # some lost: reported and failed below
            wait_for_count(db, accepted, timeout_s=30 if recovery_s else 10)
        stored_by = {"a": _stored_by(first_port), "c": _stored_by(joiner_port)}
        stops = {name: sigterm_and_wait(proc) for name, proc in (("a", first), ("c", joiner))}
        checks["end"] = check_committed_offsets(offsets, db)

    result = audit(stored_rows(db))
    report(
        "rebalance-in-database-hang",
        sent=accepted,
        **result.numbers(),
        hang_s=hang_s,
        left_in_hang=left_in_hang,
        leaver_exit_code=left.code,
        leaver_exit_s=left.seconds,
        **{f"committed_unstored_{step}": len(check.unstored) for step, check in checks.items()},
        stored_by_a=int(stored_by["a"]),
        stored_by_joiner=int(stored_by["c"]),
        **{f"exit_{name}_s": stop.seconds for name, stop in stops.items()},
        recovery_s=recovery_s,
        duration_s=time.monotonic() - started_s,
    )
    for step, check in checks.items():
        assert check.unstored == [], f"{step}: offsets committed past unstored trades"
    assert recovery_s is not None, "the backlog was stored after the hang"
    assert result.stored == accepted
    assert result.duplicates == result.missing == result.sma_mismatches == 0
    assert left.code == 0, leaver.log()
    assert left.seconds < EXIT_BUDGET_S
    for name, stop in stops.items():
        assert stop.code == 0, name
        assert stop.seconds < EXIT_BUDGET_S, name
