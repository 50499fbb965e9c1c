"""The embedded default (`tickpipe run` on SQLite) against a bare SQLite insert ceiling.

Ceiling: the workload's rows (the store's own row values and connection settings:
`row_values`, `connect_sqlite`) into a freshly migrated SQLite file (same table, same indexes),
`INSERT OR IGNORE` in batches of the processor's batch size, one transaction per batch; the clock
runs only inside the database calls. Two ways: `executemany` of a one-row statement (as anyone
writes it) and multi-row statements (as the store writes, `insert_values`).

tickpipe, timed like the processor over Kafka (rows stored, from the first to the last, polled
every 100 ms by a reader of the file):
- `run`'s processing half over a pre-filled in-process bus (`embedded_job.py`);
- `tickpipe run` itself, its simulated exchange at full speed: ingestor + processor + gateway
  in one process, as a user starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.harness import infra, pipeline, workload
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.sqlite import connect_sqlite, insert_values, row_values
from tickpipe.config import Settings

BATCH_ROWS: int = Settings.model_fields["batch_max_trades"].default
FULL_SPEED_SIM_RATE = pipeline.FULL_SPEED_SIM_RATE
_ONE_ROW = (
    "INSERT OR IGNORE INTO trades (time, exchange, symbol, trade_id, price, quantity, side, sma,"
    " signal, ingest_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _fresh_file(path: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def insert_ceilings(directory: Path, trades: int) -> dict[str, float]:
    """`{"executemany": rows/s, "multirow": rows/s}` of bare batched INSERT OR IGNORE."""
    rates = {}
    for method in ("executemany", "multirow"):
        path = directory / f"sqlite-ceiling-{method}.db"
        asyncio.run(migrate(_fresh_file(path)))
        db = connect_sqlite(str(path))
        try:
            elapsed_s = 0.0
            scored = workload.scored(trades, workload.SEED + 1)
            for start in range(0, trades, BATCH_ROWS):
                values = row_values(scored[start : start + BATCH_ROWS])
                rows = [tuple(values[i : i + 10]) for i in range(0, len(values), 10)]
                started_s = time.perf_counter()
                with db:
                    if method == "executemany":
                        db.executemany(_ONE_ROW, rows)
                    else:
                        insert_values(db, values)
                elapsed_s += time.perf_counter() - started_s
            stored = db.execute("SELECT count(*) FROM trades").fetchone()[0]
            if stored != trades:
                raise RuntimeError(f"the {method} ceiling stored {stored} rows of {trades}")
        finally:
            db.close()
            _fresh_file(path)
        rates[method] = trades / elapsed_s
    return rates


@contextlib.contextmanager
def rows_in(path: Path) -> Iterator[pipeline.Counter]:
    """A function: the rows stored so far in the SQLite file (max(id): one index probe)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield lambda: int(db.execute("SELECT coalesce(max(id), 0) FROM trades").fetchone()[0])
    finally:
        db.close()


@dataclass
class EmbeddedRun:
    trades_per_s: float
    cpu_pct: float  # CPU of the process (all threads) over wall time, first to last row
    peak_rss_mib: float
    stored: int
    delivered: int | None  # updates handed to the feed's subscriber (processing half only)
    progress: pipeline.Progress


def _watch_rows(
    rows: pipeline.Counter, target: int, child: subprocess.Popen[bytes], timeout_s: float
) -> tuple[pipeline.Progress, tuple[float, float]]:
    """Samples the rows stored until `target`; also (wall s, CPU s) at the first stored row."""
    progress = pipeline.Progress()
    cpu_from: tuple[float, float] | None = None
    started_s = time.monotonic()
    while True:
        count = rows()
        now_s = time.monotonic()
        if count and cpu_from is None:
            cpu_from = (now_s, infra.cpu_seconds(child.pid))
        if not progress.samples or count != progress.samples[-1][1]:
            progress.samples.append((now_s - started_s, count))
        if count >= target:
            assert cpu_from is not None
            return progress, cpu_from
        if child.poll() is not None:
            raise RuntimeError(f"{child.args[:4]} exited with {child.returncode}; see its log")
        if now_s - started_s > timeout_s:
            raise RuntimeError(f"{count} of {target} rows stored after {timeout_s:g} s")
        time.sleep(pipeline.COMMIT_POLL_S)


def _clean_env(**variables: str) -> dict[str, str]:
    """No TICKPIPE_* from the caller: nothing but the embedded default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    env.update({"TICKPIPE_LOG_LEVEL": "WARNING", **variables})
    return env


def processing_throughput(
    processes: infra.Processes,
    directory: Path,
    trades: int,
    *,
    timeout_s: float,
    extra_env: dict[str, str] | None = None,
) -> EmbeddedRun:
    """`embedded_job.py` over `trades` pre-filled trades (`extra_env`: e.g. PYTHONPATH of
    another tree's tickpipe, for A/B pairs)."""
    path = directory / "embedded-processing.db"
    url = _fresh_file(path)
    argv = [sys.executable, "-m", "benchmarks.harness.embedded_job", url, str(trades)]
    env = _clean_env(**(extra_env or {}))
    child = processes.start("embedded-processing", argv, env, stdout_pipe=True)
    try:
        if infra.read_line(child, timeout_s) != "ready":
            raise RuntimeError("embedded_job: unexpected output; see its log")
        with rows_in(path) as rows:
            progress, (wall_from_s, cpu_from_s) = _watch_rows(rows, trades, child, timeout_s)
        result = infra.read_line(child, timeout_s)
        wall_s = time.monotonic() - wall_from_s
        cpu_pct = 100 * (infra.cpu_seconds(child.pid) - cpu_from_s) / wall_s
        peak_rss_kib = infra.proc_status_kib(child.pid, "VmHWM") or 0
        delivered = int(orjson.loads(result.removeprefix("result "))["delivered"])
    finally:
        processes.stop(child)
    with rows_in(path) as rows:
        stored = rows()
    _fresh_file(path)
    return EmbeddedRun(
        progress.rate_per_s(), cpu_pct, peak_rss_kib / 1024, stored, delivered, progress
    )


def run_throughput(
    processes: infra.Processes, directory: Path, trades: int, *, timeout_s: float
) -> EmbeddedRun:
    """`tickpipe run` (embedded default, simulated exchange at full speed) until `trades` rows."""
    path = directory / "embedded-run.db"
    url = _fresh_file(path)
    port = infra.free_port()
    env = _clean_env(
        TICKPIPE_DATABASE_URL=url,
        TICKPIPE_SIM_RATE=str(FULL_SPEED_SIM_RATE),
        TICKPIPE_SIM_SEED=str(workload.SEED),
        TICKPIPE_SYMBOLS=",".join(workload.SYMBOLS),
        TICKPIPE_HTTP_PORT=str(port),
    )
    child = processes.start("embedded-run", infra.tickpipe_argv("run"), env)
    try:
        infra.wait_http_ok(f"http://127.0.0.1:{port}/healthz", child)
        while not path.exists():
            time.sleep(0.01)
        with rows_in(path) as rows:
            progress, (wall_from_s, cpu_from_s) = _watch_rows(rows, trades, child, timeout_s)
        wall_s = time.monotonic() - wall_from_s
        cpu_pct = 100 * (infra.cpu_seconds(child.pid) - cpu_from_s) / wall_s
        peak_rss_kib = infra.proc_status_kib(child.pid, "VmHWM") or 0
    finally:
        processes.stop(child)
    with rows_in(path) as rows:
        stored = rows()
    _fresh_file(path)
    return EmbeddedRun(progress.rate_per_s(), cpu_pct, peak_rss_kib / 1024, stored, None, progress)


def as_dict(run: EmbeddedRun) -> dict[str, Any]:
    return {
        "trades_per_s": run.trades_per_s,
        "cpu_pct": run.cpu_pct,
        "peak_rss_mib": run.peak_rss_mib,
        "stored": run.stored,
        "delivered": run.delivered,
    }
