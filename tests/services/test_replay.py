"""`tickpipe replay`: pacing, merging, invalid lines and --strict on the service; then the
command end to end into SQLite, PostgreSQL and Kafka, re-run without storing anything twice."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from fixtures.kafka import KAFKA_TEST_PARTITIONS
from tickpipe.adapters.bus.kafka import KafkaConsumer
from tickpipe.adapters.bus.memory import MemoryBus
from tickpipe.adapters.replay_files import TradeFile
from tickpipe.commands import replay
from tickpipe.config import Settings
from tickpipe.core.rolling import RollingMean
from tickpipe.core.trade import Trade
from tickpipe.services.replay import (
    AS_FAST_AS_POSSIBLE,
    ReplayFailed,
    ReplayOptions,
    replay_recordings,
)

FIRST_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WINDOW = 4


def archive_line(n: int, time_ms: int, price: str = "100.5") -> str:
    return f"{n},{price},0.001,0.1005,{time_ms},{'true' if n % 2 else 'false'},true\n"


def write_archive(path: Path, count: int, *, step_ms: int = 10, first_id: int = 1) -> Path:
    path.write_text(
        "".join(
            archive_line(n, FIRST_MS + (n - 1) * step_ms, f"{100 + n % 7}.{n % 10}")
            for n in range(first_id, first_id + count)
        )
    )
    return path


def recording(path: Path) -> TradeFile:
    return TradeFile(path, now_us=lambda: time.time_ns() // 1000)


def drain(bus: MemoryBus) -> list[Trade]:
    trades = []
    while bus.pending():
        message = bus._queue.get_nowait()
        assert message.trade is not None
        trades.append(message.trade)
    return trades


async def test_files_are_merged_by_time_and_invalid_lines_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two files interleave by exchange time; a bad line is reported with file:line, skipped."""
    btc = write_archive(tmp_path / "BTCUSDT-trades-2024-01-01.csv", 5, step_ms=20)
    eth = tmp_path / "ETHUSDT-trades-2024-01-01.csv"
    eth.write_text(archive_line(1, FIRST_MS + 5) + "oops\n" + archive_line(2, FIRST_MS + 45))
    bus = MemoryBus()
    summary = await replay_recordings(
        [recording(btc), recording(eth)], bus, speed=AS_FAST_AS_POSSIBLE
    )
    order = [(t.symbol, t.trade_id) for t in drain(bus)]
    assert order == [
        ("BTCUSDT", "1"),
        ("ETHUSDT", "1"),
        ("BTCUSDT", "2"),
        ("BTCUSDT", "3"),
        ("ETHUSDT", "2"),
        ("BTCUSDT", "4"),
        ("BTCUSDT", "5"),
    ]
    assert (summary.files, summary.read, summary.sent, summary.invalid) == (2, 7, 7, 1)
    assert f"skipped {eth}:2: expected 7 fields" in capsys.readouterr().err
    assert "7 trades read, 7 sent, 1 invalid" in str(summary)


async def test_strict_stops_at_the_first_invalid_line(tmp_path: Path) -> None:
    """--strict: ReplayFailed names file and line; what came before was sent."""
    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    path.write_text(archive_line(1, FIRST_MS) + "1,2,3\n" + archive_line(3, FIRST_MS + 1))
    bus = MemoryBus()
    with pytest.raises(ReplayFailed, match=rf"{path}:2: expected 7 fields .*--strict"):
        await replay_recordings([recording(path)], bus, speed=AS_FAST_AS_POSSIBLE, strict=True)
    assert [t.trade_id for t in drain(bus)] == ["1"]


@pytest.mark.parametrize(("speed", "expected_s"), [(1.0, 0.6), (4.0, 0.15)])
async def test_replay_keeps_the_original_pace_times_speed(
    tmp_path: Path, speed: float, expected_s: float
) -> None:
    """Trades 0.6 s apart in exchange time take 0.6 s / speed on the wall clock."""
    path = write_archive(tmp_path / "BTCUSDT-trades-2024-01-01.csv", 7, step_ms=100)
    started_s = time.monotonic()
    summary = await replay_recordings([recording(path)], MemoryBus(), speed=speed)
    elapsed_s = time.monotonic() - started_s
    assert summary.read == 7
    assert expected_s * 0.95 <= elapsed_s < expected_s + 0.5


async def test_max_speed_does_not_wait(tmp_path: Path) -> None:
    """--speed max ignores the hour between two trades."""
    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    path.write_text(archive_line(1, FIRST_MS) + archive_line(2, FIRST_MS + 3_600_000))
    started_s = time.monotonic()
    await replay_recordings([recording(path)], MemoryBus(), speed=AS_FAST_AS_POSSIBLE)
    assert time.monotonic() - started_s < 1.0


def stored_rows(db_path: Path) -> list[tuple[str, str, float | None]]:
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT trade_id, price, sma FROM trades ORDER BY id").fetchall()


async def test_replay_without_kafka_scores_and_stores_each_trade_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without Kafka the trades go through a processor into the store, with their SMA; a
    second run, and an overlapping file, store nothing twice and keep the windows right."""
    db_path = tmp_path / "replay.db"
    settings = Settings(database_url=f"sqlite:///{db_path}", sma_window=WINDOW)
    first = write_archive(tmp_path / "BTCUSDT-trades-2024-01-01.csv", 30)
    options = ReplayOptions(files=(str(first),), speed=AS_FAST_AS_POSSIBLE)
    await replay(settings, options)
    assert "30 trades read, 30 sent, 0 invalid" in capsys.readouterr().out
    rows = stored_rows(db_path)
    assert [r[0] for r in rows] == [str(n) for n in range(1, 31)]
    await replay(settings, options)
    (tmp_path / "more").mkdir()
    overlap = write_archive(tmp_path / "more" / "BTCUSDT-trades-2024-01-01.csv", 20, first_id=21)
    await replay(settings, ReplayOptions(files=(str(overlap),), speed=AS_FAST_AS_POSSIBLE))
    rows = stored_rows(db_path)
    assert [r[0] for r in rows] == [str(n) for n in range(1, 41)]
    mean = RollingMean(WINDOW)
    for trade_id, price, sma in rows:
        expected = mean.push(Decimal(price))
        assert sma == (None if expected is None else pytest.approx(float(expected))), trade_id


@pytest.mark.infra
async def test_replay_into_postgres_stores_nothing_twice(
    tmp_path: Path, clean_postgres_url: str
) -> None:
    """The same replay twice into PostgreSQL: every trade stored once."""
    archive = write_archive(tmp_path / "BTCUSDT-trades-2024-01-01.csv", 500)
    settings = Settings(database_url=clean_postgres_url, sma_window=WINDOW)
    options = ReplayOptions(files=(str(archive),), speed=AS_FAST_AS_POSSIBLE)
    for _ in range(2):
        await replay(settings, options)
    connection = await asyncpg.connect(clean_postgres_url)
    try:
        count, distinct = await connection.fetchrow(
            "SELECT count(*), count(DISTINCT trade_id) FROM trades"
        )
    finally:
        await connection.close()
    assert (count, distinct) == (500, 500)


@pytest.mark.infra
async def test_replay_with_kafka_sends_every_trade_to_the_topic(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """With Kafka configured, the trades go to the topic (the processors store them)."""
    archive = write_archive(tmp_path / "ETHUSDT-trades-2024-01-01.csv", 200)
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic=kafka_topic,
        kafka_partitions=KAFKA_TEST_PARTITIONS,
    )
    await replay(settings, ReplayOptions(files=(str(archive),), speed=AS_FAST_AS_POSSIBLE))
    consumer = KafkaConsumer(kafka_bootstrap, kafka_topic, group=f"{kafka_topic}-check")
    received: list[Trade] = []
    try:
        async with asyncio.timeout(20):
            while len(received) < 200:
                messages = await consumer.poll(500, 0.5)
                received += [m.trade for m in messages if m.trade is not None]
    finally:
        await consumer.close()
    assert sorted(int(t.trade_id) for t in received) == list(range(1, 201))
    assert {(t.exchange, t.symbol) for t in received} == {("binance", "ETHUSDT")}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickpipe", "replay", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_replays_and_fails_in_one_line(tmp_path: Path) -> None:
    """The command prints its summary; --strict, a missing file or a bad --speed fail in one
    line with a non-zero status."""
    archive = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    archive.write_text(archive_line(1, FIRST_MS) + "bad\n" + archive_line(2, FIRST_MS + 5))
    db = f"sqlite:///{tmp_path}/cli.db"
    done = run_cli(str(archive), "--speed", "max", "--database-url", db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 trades read, 2 sent, 1 invalid" in done.stdout
    assert f"{archive}:2: expected 7 fields" in done.stderr
    strict = run_cli(str(archive), "--strict", "--speed", "max", "--database-url", db, cwd=tmp_path)
    assert strict.returncode == 1
    assert f"tickpipe: error: {archive}:2: expected 7 fields" in strict.stderr
    missing = run_cli("nowhere.csv", "--database-url", db, cwd=tmp_path)
    assert missing.returncode == 1
    assert "tickpipe: error: cannot replay nowhere.csv:" in missing.stderr
    assert run_cli(str(archive), "--speed", "0", cwd=tmp_path).returncode == 2


def test_cli_refuses_bombs_and_corrupt_archives_in_one_line(tmp_path: Path) -> None:
    """A zip bomb and a zip whose data is damaged each end the command with status 1 and one
    line naming the file, never a traceback."""
    import zipfile

    bomb = tmp_path / "BTCUSDT-trades-2024-02.zip"
    with (
        zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("BTCUSDT-trades-2024-02.csv", "w") as member,
    ):
        for _ in range(128):
            member.write(b"1" * 1024 * 1024)
    damaged = tmp_path / "BTCUSDT-trades-2024-03.zip"
    with zipfile.ZipFile(damaged, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        rows = (archive_line(n, FIRST_MS + n) for n in range(1, 10_000))
        archive.writestr("BTCUSDT-trades-2024-03.csv", "".join(rows))
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    damaged.write_bytes(bytes(data))
    db = f"sqlite:///{tmp_path}/cli.db"
    for path, reason in [(bomb, "refused"), (damaged, "corrupt or truncated archive")]:
        done = run_cli(str(path), "--speed", "max", "--database-url", db, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1, done.stderr
        assert errors[0].startswith(f"tickpipe: error: cannot replay {path}")
        assert reason in errors[0]
        assert "Traceback" not in done.stderr
