"""Recorded-trade files for `tickpipe replay`: Binance trade archives (CSV, zipped or not) and
JSON lines, each line a validated trade or an invalid line with its number and reason."""

from __future__ import annotations

import zipfile
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from tickpipe.adapters.replay_files import ReplayFormat, TradeFile, open_recording
from tickpipe.core.trade import Side, Trade
from tickpipe.ports import InvalidLine

NOW_US = 1_800_000_000_000_000
# Binance's archive layout: id,price,qty,quote_qty,time,is_buyer_maker,is_best_match
CSV_MS = "4172862847,42283.58000000,0.00109000,46.08910220,1704067200018,true,true\n"
CSV_US = "4172862848,42283.59000000,0.50000000,21141.79500000,1735689600000123,False,True\n"


def read(path: Path, **options: object) -> list[Trade | InvalidLine]:
    return list(TradeFile(path, now_us=lambda: NOW_US, **options))  # type: ignore[arg-type]


def test_binance_csv_rows_become_exact_trades(tmp_path: Path) -> None:
    """Exact decimals, ms or us times by magnitude, the taker's side, symbol from the name."""
    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    path.write_text("id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\n" + CSV_MS + CSV_US)
    first, second = read(path)
    assert isinstance(first, Trade)
    assert isinstance(second, Trade)
    assert first.exchange == "binance"
    assert first.symbol == "BTCUSDT"
    assert first.trade_id == "4172862847"
    assert first.price.as_tuple() == Decimal("42283.58000000").as_tuple()
    assert first.quantity.as_tuple() == Decimal("0.00109000").as_tuple()
    assert first.side is Side.SELL  # the buyer was the maker: the taker sold
    assert first.exchange_time_us == 1_704_067_200_018_000
    assert first.ingest_time_us == NOW_US
    assert second.side is Side.BUY
    assert second.exchange_time_us == 1_735_689_600_000_123  # already microseconds


def test_zipped_archive_and_symbol_option(tmp_path: Path) -> None:
    """The .zip Binance publishes is read directly; --symbol names a file of any name."""
    path = tmp_path / "ETHUSDT-trades-2024-01.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ETHUSDT-trades-2024-01.csv", CSV_MS * 3)
    trades = read(path)
    assert [t.symbol for t in trades if isinstance(t, Trade)] == ["ETHUSDT"] * 3
    recording = TradeFile(path, now_us=lambda: NOW_US)
    assert recording.size_bytes == len(CSV_MS) * 3
    list(recording)
    assert recording.bytes_read == recording.size_bytes
    renamed = tmp_path / "recorded.csv"
    renamed.write_text(CSV_MS)
    [trade] = read(renamed, symbol="btc-usdt")
    assert isinstance(trade, Trade)
    assert trade.symbol == "BTCUSDT"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1,2,3", "expected 7 fields"),
        ("x1,42.5,1,42.5,1704067200018,true,true", "id 'x1' is not a whole number"),
        ("1,abc,1,1,1704067200018,true,true", "price 'abc' is not a decimal number"),
        ("1,-5,1,1,1704067200018,true,true", "price -5 is not positive"),
        ("1,5,0,0,1704067200018,true,true", "quantity 0 is not positive"),
        ("1,5,1,5,17040672.5,true,true", "time '17040672.5' is not epoch"),
        ("1,5,1,5,1704067200018,maybe,true", "is_buyer_maker 'maybe' is not true or false"),
        ("1,5,1,5,1000,true,true", "before 2009"),
    ],
)
def test_bad_csv_lines_are_reported_with_their_number(
    tmp_path: Path, line: str, reason: str
) -> None:
    """A bad line becomes an InvalidLine naming the file, the line and the reason."""
    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    path.write_text(CSV_MS + line + "\n\n" + CSV_MS)
    first, bad, last = read(path)
    assert isinstance(first, Trade)
    assert isinstance(last, Trade)
    assert isinstance(bad, InvalidLine)
    assert (bad.path, bad.line_number) == (str(path), 2)
    assert reason in bad.reason
    assert str(bad).startswith(f"{path}:2: ")


def test_json_lines_keep_every_digit_and_the_recorded_ingest_time(tmp_path: Path) -> None:
    """String or number amounts stay exact; ingest time is kept when recorded, else now."""
    lines = [
        {
            "exchange": "coinbase",
            "symbol": "BTC-USD",
            "trade_id": "abc-1",
            "price": "65000.10",
            "quantity": "0.00100000",
            "side": "sell",
            "exchange_time_us": 1_714_564_800_000_000,
            "ingest_time_us": 1_714_564_800_000_500,
        },
        {
            "exchange": "kraken",
            "symbol": "BTC/USD",
            "trade_id": 17,
            "price": 65000.10,
            "quantity": 1.5e-3,
            "side": None,
            "exchange_time_us": 1_714_564_800_000_001,
        },
    ]
    path = tmp_path / "trades.jsonl"
    text = "\n".join(orjson.dumps(line).decode() for line in lines)
    path.write_text(text.replace("65000.1,", "65000.10,"))
    recorded, numeric = read(path)
    assert isinstance(recorded, Trade)
    assert isinstance(numeric, Trade)
    assert (recorded.symbol, recorded.side, recorded.ingest_time_us) == (
        "BTCUSD",
        Side.SELL,
        1_714_564_800_000_500,
    )
    assert recorded.quantity.as_tuple() == Decimal("0.00100000").as_tuple()
    assert numeric.price.as_tuple() == Decimal("65000.10").as_tuple()
    assert numeric.quantity == Decimal("0.0015")
    assert (numeric.trade_id, numeric.side, numeric.ingest_time_us) == ("17", None, NOW_US)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"exchange": "binance", "symbol": "BTCUSDT"}', "missing field 'trade_id'"),
        (
            '{"exchange": "nasdaq", "symbol": "AAPL", "trade_id": "1", "price": "1",'
            ' "quantity": "1", "exchange_time_us": 1714564800000000}',
            "unknown exchange 'nasdaq'",
        ),
        (
            '{"exchange": "binance", "symbol": "BTC$", "trade_id": "1", "price": "1",'
            ' "quantity": "1", "exchange_time_us": 1714564800000000}',
            "invalid symbol",
        ),
        (
            '{"exchange": "binance", "symbol": "BTCUSDT", "trade_id": "1", "price": "1",'
            ' "quantity": "1", "exchange_time_us": "soon"}',
            "field 'exchange_time_us' has the wrong type",
        ),
        (
            '{"exchange": "binance", "symbol": "BTCUSDT", "trade_id": true, "price": "1",'
            ' "quantity": "1", "exchange_time_us": 1714564800000000}',
            "field 'trade_id' has the wrong type",
        ),
        (
            '{"exchange": "binance", "symbol": "BTCUSDT", "trade_id": "1", "price": "1",'
            ' "quantity": "1", "side": 3, "exchange_time_us": 1714564800000000}',
            "side 3 is not",
        ),
    ],
)
def test_bad_json_lines_are_reported(tmp_path: Path, record: str, reason: str) -> None:
    """Unreadable or invalid records become InvalidLines with the reason."""
    path = tmp_path / "trades.jsonl"
    path.write_bytes(record.encode() + b"\n")
    [bad] = read(path)
    assert isinstance(bad, InvalidLine)
    assert bad.line_number == 1
    assert reason in bad.reason


def test_undecodable_bytes_are_an_invalid_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported, not fatal."""
    path = tmp_path / "trades.jsonl"
    path.write_bytes(b"\xff\xfe{}\n")
    [bad] = read(path)
    assert isinstance(bad, InvalidLine)
    assert "utf-8" in bad.reason


def test_files_that_cannot_be_replayed_say_why(tmp_path: Path) -> None:
    """Unknown extension, unknown symbol, missing file: an error naming the file at once."""
    odd = tmp_path / "trades.txt"
    odd.write_text(CSV_MS)
    with pytest.raises(ValueError, match="pass --format"):
        open_recording(odd, None, symbol=None, now_us=lambda: NOW_US)
    recording = open_recording(odd, "binance-csv", symbol="BTCUSDT", now_us=lambda: NOW_US)
    assert recording.format is ReplayFormat.BINANCE_CSV
    anonymous = tmp_path / "recorded.csv"
    anonymous.write_text(CSV_MS)
    with pytest.raises(ValueError, match="pass --symbol"):
        open_recording(anonymous, None, symbol=None, now_us=lambda: NOW_US)
    with pytest.raises(OSError, match=r"missing\.csv"):
        open_recording(tmp_path / "missing.csv", None, symbol="BTCUSDT", now_us=lambda: NOW_US)
