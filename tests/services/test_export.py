"""`tickpipe export`: a real database's trades into JSON lines, CSV and Parquet, oldest first with
exact decimals; export -> replay into an empty database gives the identical rows."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from fixtures.procs import TICKPIPE
from tickpipe.adapters import export_files
from tickpipe.adapters.export_files import ExportFormat
from tickpipe.adapters.store.export_reads import ExportQuery, StoredTrades
from tickpipe.services.export import ExportFailed, export_trades

FIRST_US = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z
PRICES = ("65000.10000000", "0.00000001", "64999.5", "42")
COLUMNS = "time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time"


def tickpipe(args: list[str], database: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TICKPIPE, *args],
        env={"PATH": "/usr/bin:/bin", "TICKPIPE_DATABASE_URL": f"sqlite:///{database}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def recorded_trades(count: int) -> str:
    """Two venues of BTCUSDT and one other symbol, interleaved, in time order."""
    lines = []
    for n in range(count):
        exchange, symbol = [("binance", "BTCUSDT"), ("coinbase", "BTCUSDT"), ("kraken", "ETHUSD")][
            n % 3
        ]
        lines.append(
            orjson.dumps(
                {
                    "exchange": exchange,
                    "symbol": symbol,
                    "trade_id": str(n),
                    "price": PRICES[n % 4],
                    "quantity": f"0.{n:04d}1",
                    "side": ["buy", "sell", None][n % 3 - 1 if n % 5 else 2],
                    "exchange_time_us": FIRST_US + n * 1_000 - (n % 2) * 500,
                    "ingest_time_us": FIRST_US + n * 1_000 + 7,
                }
            ).decode()
        )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def source_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "in.jsonl").write_text(recorded_trades(3_000))
    tickpipe(["replay", "--speed", "max", str(tmp / "in.jsonl")], tmp / "source.db")
    return tmp / "source.db"


def rows(database: Path, where: str = "") -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(f"SELECT {COLUMNS} FROM trades {where} ORDER BY time, id").fetchall()  # noqa: S608


def test_export_then_replay_into_an_empty_database_gives_identical_rows(
    source_db: Path, tmp_path: Path
) -> None:
    """Every BTCUSDT row (both venues, 2,000 of them) comes back column for column, SMA too."""
    out = tmp_path / "btc.jsonl"
    tickpipe(["export", "BTC-USDT", "--format", "jsonl", "--out", str(out)], source_db)
    tickpipe(["replay", "--speed", "max", str(out)], tmp_path / "copy.db")
    expected = rows(source_db, "WHERE symbol = 'BTCUSDT'")
    assert len(expected) == 2_000
    assert rows(tmp_path / "copy.db") == expected


def test_json_lines_are_oldest_first_with_exact_decimal_strings(
    source_db: Path, tmp_path: Path
) -> None:
    """Strings for amounts, digit for digit; times ascending; --exchange and --start/--end cut."""
    out = tmp_path / "cut.jsonl"
    tickpipe(
        [
            "export",
            "BTCUSDT",
            "--exchange",
            "coinbase",
            "--start",
            "2024-05-01T12:00:01Z",
            "--end",
            str((FIRST_US + 2_000_000) // 1000),
            "--format",
            "jsonl",
            "--out",
            str(out),
        ],
        source_db,
    )
    records = [orjson.loads(line) for line in out.read_text().splitlines()]
    times = [r["exchange_time_us"] for r in records]
    assert times == sorted(times)
    assert times[0] >= FIRST_US + 1_000_000
    assert times[-1] < FIRST_US + 2_000_000
    assert {r["exchange"] for r in records} == {"coinbase"}
    assert len(records) == 334  # n = 1000, 1003, ..., 1999
    assert {r["price"] for r in records} <= set(PRICES)
    assert "0.00000001" in {r["price"] for r in records}


async def test_csv_keeps_the_stored_text_of_every_amount(source_db: Path, tmp_path: Path) -> None:
    """CSV rows: the header, then the stored price/quantity text unchanged."""
    out = tmp_path / "btc.csv"
    rows_ = StoredTrades(f"sqlite:///{source_db}", ExportQuery("BTCUSDT"), batch_rows=64)
    summary = await export_trades(rows_, ExportFormat.CSV, out, progress=False)
    with out.open(newline="") as file:
        table = list(csv.DictReader(file))
    assert summary.rows == len(table) == 2_000
    stored = rows(source_db, "WHERE symbol = 'BTCUSDT'")
    assert [(r["price"], r["quantity"]) for r in table] == [(s[4], s[5]) for s in stored]


async def test_parquet_without_pyarrow_is_one_clear_error(
    source_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pyarrow: ExportFailed says what to install, and no file is left behind."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    rows_ = StoredTrades(f"sqlite:///{source_db}", ExportQuery("BTCUSDT"))
    with pytest.raises(ExportFailed, match=r"pip install 'tickpipe\[parquet\]'"):
        await export_trades(rows_, ExportFormat.PARQUET, tmp_path / "x.parquet", progress=False)
    assert not (tmp_path / "x.parquet").exists()


async def test_parquet_holds_exact_decimals(source_db: Path, tmp_path: Path) -> None:
    """decimal128(38, 18) columns equal the stored decimals; a UTC microsecond time column."""
    import pyarrow.parquet as pq  # the test extra installs it: tested, never skipped

    out = tmp_path / "btc.parquet"
    rows_ = StoredTrades(f"sqlite:///{source_db}", ExportQuery("BTCUSDT"), batch_rows=500)
    await export_trades(rows_, ExportFormat.PARQUET, out, progress=False)
    table = pq.read_table(out)
    stored = rows(source_db, "WHERE symbol = 'BTCUSDT'")
    assert str(table.schema.field("price").type) == "decimal128(38, 18)"
    assert table.column("price").to_pylist() == [Decimal(s[4]) for s in stored]
    assert table.column("quantity").to_pylist() == [Decimal(s[5]) for s in stored]


def test_a_decimal_beyond_the_parquet_scale_is_refused_not_rounded() -> None:
    """1e-19 would round to zero at scale 18: an error naming the trade instead."""
    with pytest.raises(ValueError, match="trade 7 does not fit"):
        export_files._exact(Decimal("1E-19"), "price", "7")
