"""`tickpipe process --workers 2` on the real broker, PostgreSQL and Redis: the two workers share
the partitions and store every trade exactly once; SIGTERM stops both within the stop budget;
a worker that dies takes the command down with a non-zero exit."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

import pytest

from faults.harness import (
    audit,
    ingest_totals,
    metric,
    migrate,
    pipeline_env,
    readyz,
    report,
    stored_count,
    stored_rows,
    wait_for,
    wait_for_count,
)
from fixtures.procs import Tickpipe, free_port, tickpipe_process

pytestmark = [pytest.mark.infra, pytest.mark.slow]

EXIT_BUDGET_S = 10.0
# Keys spread over every partition of the 6-partition test topic, so that whichever partitions
# a worker is assigned, it has trades to process.
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,ADAUSDT,DOGEUSDT,AVAXUSDT,DOTUSDT,LINKUSDT"


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tags(log: str, sentence: str) -> list[str]:
    """The `[worker i]` tag of each log line containing `sentence`, sorted ("-": no tag)."""
    tags = [re.search(r"\[worker \d+\]", line) for line in log.splitlines() if sentence in line]
    return sorted(tag.group() if tag else "-" for tag in tags)


def _workers_env(
    db: str, kafka_bootstrap: str, kafka_topic: str, redis_url: str, names: tuple[str, str]
) -> dict[str, str]:
    return pipeline_env(
        db,
        kafka_bootstrap,
        kafka_topic,
        redis_url,
        names,
        TICKPIPE_SYMBOLS=SYMBOLS,
        TICKPIPE_SIM_RATE="400",
        TICKPIPE_WORKERS="2",
    )


@pytest.mark.timeout(150)
def test_two_workers_share_the_partitions_store_each_trade_once_and_stop_on_sigterm(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """Both workers process trades (each names itself on its log lines, the command does not),
    everything the ingestor accepted is stored exactly once with exact SMAs, and SIGTERM to the
    command stops it and both workers with status 0 within 10 s."""
    db = empty_postgres_url
    env = _workers_env(db, kafka_bootstrap, kafka_topic, redis_url, redis_names)
    migrate(env)
    port = free_port()
    process_env = {**env, "TICKPIPE_METRICS_PORT": str(port)}
    ingest_env = {**env, "TICKPIPE_WORKERS": "1", "TICKPIPE_METRICS_PORT": str(free_port())}
    with (
        tickpipe_process(["process"], process_env, tmp_path / "process.log") as command,
        tickpipe_process(["ingest"], ingest_env, tmp_path / "ingest.log") as ingest,
    ):
        command.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=40)
        status, body = readyz(port)
        assert status == 200
        assert body["checks"] == ["worker-0", "worker-1"]
        workers = _children(command.process.pid)
        assert len(workers) == 2
        wait_for(
            lambda: _tags(command.log(), "processing Kafka") == ["[worker 0]", "[worker 1]"],
            10,
            "each worker's startup line naming it",
        )
        assert _tags(command.log(), "processor workers started") == ["-"]
        wait_for(
            lambda: all(
                metric(port, "tickpipe_trades_processed_total", worker=str(w)) > 0 for w in (0, 1)
            ),
            40,
            "both workers processing trades",
        )
        assert metric(port, "tickpipe_worker_up") == 2
        wait_for(lambda: stored_count(db) > 3_000, 60, "a few thousand trades stored")
        assert ingest.terminate() == 0, ingest.log()
        accepted, dropped = ingest_totals(ingest.log())
        wait_for_count(db, accepted, timeout_s=40)
        per_worker = [metric(port, "tickpipe_trades_stored_total", worker=str(w)) for w in (0, 1)]
        started_s = time.monotonic()
        code = command.terminate(timeout_s=EXIT_BUDGET_S + 5)
        exit_s = time.monotonic() - started_s
        still_running = [pid for pid in workers if _alive(pid)]

    result = audit(stored_rows(db), seeded=False)
    report(
        "process-workers",
        sent=accepted,
        **result.numbers(),
        stored_by_worker_0=per_worker[0],
        stored_by_worker_1=per_worker[1],
        exit_s=exit_s,
    )
    assert code == 0, command.log()
    assert exit_s < EXIT_BUDGET_S
    assert still_running == []
    assert dropped == 0
    assert all(stored > 0 for stored in per_worker)
    assert sum(per_worker) == accepted
    assert result.stored == accepted
    assert result.duplicates == result.missing == result.sma_mismatches == 0


@pytest.mark.timeout(90)
def test_a_worker_killed_stops_the_command_with_a_non_zero_exit(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """SIGKILL to one worker: the command stops the other one and exits non-zero at once,
    naming the worker that died."""
    env = _workers_env(empty_postgres_url, kafka_bootstrap, kafka_topic, redis_url, redis_names)
    migrate(env)
    port = free_port()
    command = Tickpipe(["process"], {**env, "TICKPIPE_METRICS_PORT": str(port)}, tmp_path / "p.log")
    try:
        command.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=40)
        victim, survivor = _children(command.process.pid)
        os.kill(victim, signal.SIGKILL)
        code = command.process.wait(EXIT_BUDGET_S)
    finally:
        command.kill()
    assert code != 0
    assert "exited with code -9" in command.log()
    wait_for(lambda: not _alive(survivor), 2, "the other worker gone")
