"""`tickpipe replay --speed max` of 1,000,000 trades (a generated Binance trade archive): trades/s
into SQLite and PostgreSQL (through the in-process processor), and into Kafka (producing side),
then the same file once more (stores nothing twice).

    .venv/bin/python -m benchmarks.replay_throughput [--trades N] [--targets sqlite,postgres,kafka]

PostgreSQL: its own database `tickpipe_bench_replay` (dropped at the end). Kafka: its own Tansu
broker (killed at the end). The figures are the replay's own summary lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "tickpipe_bench_replay"  # ours alone: dropped and recreated
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
FIRST_TIME_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def write_archive(path: Path, trades: int, seed: int = 1) -> None:
    """Binance's `id,price,qty,quote_qty,time,is_buyer_maker,is_best_match`, ms times with ties."""
    rng = random.Random(seed)
    time_ms, price_cents = FIRST_TIME_MS, 4_200_000
    with path.open("w") as out:
        for n in range(trades):
            time_ms += rng.choice((0, 0, 1, 3, 20))
            price_cents = max(price_cents + rng.randrange(-50, 51), 100)
            qty = rng.randrange(1, 10**8)
            out.write(
                f"{3_000_000_000 + n},{price_cents // 100}.{price_cents % 100:02d}000000,"
                f"{qty // 10**8}.{qty % 10**8:08d},0,{time_ms},"
                f"{'true' if rng.random() < 0.5 else 'false'},true\n"
            )


def replay(path: Path, env: dict[str, str]) -> str:
    """Runs the command; returns its summary line."""
    done = subprocess.run(
        [sys.executable, "-m", "tickpipe", "replay", str(path), "--speed", "max"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tickpipe replay failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def count_rows(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM trades"))
    finally:
        await connection.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{DATABASE}"'))
    try:
        yield DATABASE_URL
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    env["TICKPIPE_LOG_LEVEL"] = "WARNING"
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--targets", default="sqlite,postgres,kafka")
    args = parser.parse_args()
    targets = args.targets.split(",")
    with tempfile.TemporaryDirectory(prefix="tickpipe-replay-") as tmp:
        archive = Path(tmp) / "BTCUSDT-trades-2024-01-01.csv"
        write_archive(archive, args.trades)
        print(f"{args.trades:,} trades, {archive.stat().st_size / 2**20:.0f} MiB of CSV")
        if "sqlite" in targets:
            url = f"sqlite:///{tmp}/replay.db"
            env = base_env() | {"TICKPIPE_DATABASE_URL": url}
            print("sqlite:  ", replay(archive, env))
            print("  again: ", replay(archive, env))
            rows = sqlite3.connect(f"{tmp}/replay.db").execute("SELECT count(*) FROM trades")
            print(f"  rows stored: {rows.fetchone()[0]:,}")
        if "postgres" in targets:
            with postgres_database() as url:
                env = base_env() | {"TICKPIPE_DATABASE_URL": url}
                print("postgres:", replay(archive, env))
                print("  again: ", replay(archive, env))
                print(f"  rows stored: {asyncio.run(count_rows(url)):,}")
        if "kafka" in targets:
            from benchmarks.harness.infra import Processes, tansu_broker

            processes = Processes(Path(tmp) / "logs")
            try:
                with tansu_broker(processes) as bootstrap:
                    env = base_env() | {"TICKPIPE_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
                    print("kafka:   ", replay(archive, env))
            finally:
                processes.stop_all()


if __name__ == "__main__":
    main()
