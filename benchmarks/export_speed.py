"""`tickpipe export` speed and peak memory on N stored trades (default 1,000,000).

    python benchmarks/export_speed.py [N] [--format jsonl|csv|parquet]

Fills a fresh SQLite file with N trades straight through SQL (the store's own row format), then
runs `tickpipe export` as a child process and reports rows/s and its peak RSS (ru_maxrss)."""

from __future__ import annotations

import argparse
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tickpipe.core.trade import format_time_us

FIRST_US = 1_714_564_800_000_000


def fill(db_path: Path, count: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "tickpipe", "migrate", "--database-url", f"sqlite:///{db_path}"],
        check=True,
        capture_output=True,
    )
    with sqlite3.connect(db_path) as db:
        db.executemany(
            "INSERT INTO trades (time, exchange, symbol, trade_id, price, quantity, side, sma,"
            " signal, ingest_time) VALUES (?, 'binance', 'BTCUSDT', ?, ?, ?, ?, ?, 'HOLD', ?)",
            (
                (
                    format_time_us(FIRST_US + n * 1_000),
                    str(n),
                    f"65{n % 1000:03d}.{n % 97:02d}000000",
                    f"0.{n % 9973:05d}",
                    "buy" if n % 2 else "sell",
                    65_000.5 + n % 13,
                    format_time_us(FIRST_US + n * 1_000 + 250),
                )
                for n in range(count)
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--format", default="jsonl", choices=["jsonl", "csv", "parquet"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_path, out = Path(tmp) / "bench.db", Path(tmp) / f"out.{args.format}"
        fill(db_path, args.rows)
        started = time.perf_counter()
        subprocess.run(
            [
                *(sys.executable, "-m", "tickpipe", "export", "BTCUSDT"),
                *("--format", args.format, "--out", str(out)),
                *("--database-url", f"sqlite:///{db_path}"),
            ],
            check=True,
        )
        seconds = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"{args.rows:,} rows -> {args.format} in {seconds:.1f} s:"
            f" {args.rows / seconds:,.0f} rows/s, peak RSS {peak_mib:.0f} MiB,"
            f" file {out.stat().st_size / 2**20:.0f} MiB"
        )


if __name__ == "__main__":
    main()
