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
            '{"exchange": "NASDAQ", "symbol": "AAPL", "trade_id": "1", "price": "1",'
            ' "quantity": "1", "exchange_time_us": 1714564800000000}',
            "unknown exchange 'NASDAQ'",
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


# --- input bounds: long lines, zip bombs, corrupt archives ----------------------------------

MIB = 1024 * 1024


def zip_with_long_line(path: Path, line_mib: int) -> None:
    """A zip whose CSV holds one `line_mib` MiB line, then a valid trade; written in chunks."""
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("BTCUSDT-trades-2024-01.csv", "w") as member,
    ):
        chunk = b"9" * MIB
        for _ in range(line_mib):
            member.write(chunk)
        member.write(b"\n" + CSV_MS.encode())


def test_zip_bomb_is_refused_up_front_naming_the_file(tmp_path: Path) -> None:
    """A 128 MiB line compresses ~1000x: refused before reading, one line naming the file."""
    path = tmp_path / "BTCUSDT-trades-2024-01.zip"
    zip_with_long_line(path, 128)
    assert path.stat().st_size < MIB
    with pytest.raises(ValueError, match="refused") as refused:
        open_recording(path, None, symbol=None, now_us=lambda: NOW_US)
    assert str(path) in str(refused.value)
    assert "\n" not in str(refused.value)


def test_128_mib_line_is_skipped_with_bounded_memory(tmp_path: Path) -> None:
    """With the expansion limit lifted, the 128 MiB line is an invalid line, the next line is
    still read, and the peak of Python allocations stays a few MiB, never the line."""
    import tracemalloc

    path = tmp_path / "BTCUSDT-trades-2024-01.zip"
    zip_with_long_line(path, 128)
    recording = TradeFile(path, now_us=lambda: NOW_US, max_expansion_ratio=1e6)
    tracemalloc.start()
    try:
        items = list(recording)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    invalid, trade = items
    assert isinstance(invalid, InvalidLine)
    assert invalid.line_number == 1
    assert "134,217,728 bytes is longer than the limit" in invalid.reason  # 128 MiB
    assert isinstance(trade, Trade)
    assert trade.trade_id == "4172862847"
    assert peak_bytes < 8 * MIB, peak_bytes


def test_long_line_in_a_plain_file_is_an_invalid_line(tmp_path: Path) -> None:
    """Plain JSON lines: a line over the limit is reported with its number, the rest read."""
    path = tmp_path / "trades.jsonl"
    good = orjson.dumps(
        {
            "exchange": "binance",
            "symbol": "BTCUSDT",
            "trade_id": "1",
            "price": "1.5",
            "quantity": "2",
            "exchange_time_us": 1_704_067_200_000_000,
        }
    ).decode()
    path.write_text(good + "\n" + "x" * 5_000 + "\n" + good.replace('"1"', '"2"') + "\n")
    items = read(path, max_line_bytes=1_000)
    assert [type(item).__name__ for item in items] == ["Trade", "InvalidLine", "Trade"]
    assert isinstance(items[1], InvalidLine)
    assert items[1].line_number == 2
    assert "5,000 bytes" in items[1].reason


def test_gzip_bomb_stops_at_the_expansion_limit(tmp_path: Path) -> None:
    """A gzip has no trustworthy size header: reading stops once past the expansion bound."""
    import gzip

    from tickpipe.adapters.replay_files import EXPANSION_FREE_BYTES
    from tickpipe.ports import UnreadableRecording

    path = tmp_path / "trades.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        for _ in range(EXPANSION_FREE_BYTES // MIB + 8):
            handle.write(b"7" * MIB)
    with pytest.raises(UnreadableRecording, match="refused: expands past") as refused:
        read(path)
    assert str(refused.value).startswith(str(path))


def test_gzipped_json_lines_are_read(tmp_path: Path) -> None:
    """`.jsonl.gz` is JSON lines, decompressed on the fly."""
    import gzip

    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(CSV_MS + CSV_US)
    assert [t.trade_id for t in read(path) if isinstance(t, Trade)] == [
        "4172862847",
        "4172862848",
    ]


def test_corrupt_archives_give_one_line_naming_the_file(tmp_path: Path) -> None:
    """Not a zip: ValueError at open. Damaged deflate data or a truncated gzip: one-line
    UnreadableRecording naming the file, no traceback of zipfile/zlib internals."""
    from tickpipe.ports import UnreadableRecording

    fake = tmp_path / "BTCUSDT-trades-2024-01.zip"
    fake.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(ValueError, match="not a readable zip archive"):
        open_recording(fake, None, symbol=None, now_us=lambda: NOW_US)

    damaged = tmp_path / "ETHUSDT-trades-2024-01.zip"
    with zipfile.ZipFile(damaged, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        rows = (f"{n},{n % 997}.5,0.{n},1.0,{1704067200018 + n},true,true\n" for n in range(9_999))
        archive.writestr("ETHUSDT-trades-2024-01.csv", "".join(rows))
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    damaged.write_bytes(bytes(data))
    with pytest.raises(UnreadableRecording) as unreadable:
        read(damaged)
    assert str(unreadable.value).startswith(f"{damaged}: corrupt or truncated archive")
    assert "\n" not in str(unreadable.value)

    import gzip

    truncated = tmp_path / "trades.jsonl.gz"
    whole = gzip.compress(b"\n".join(b'{"n": %d}' % n for n in range(10_000)))
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UnreadableRecording, match="corrupt or truncated"):
        read(truncated)
