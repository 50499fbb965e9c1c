"""Recorded trades from files, for `tickpipe replay`: JSON lines of `tickpipe.v1.Trade` fields,
and the CSV of Binance's public trade archives (plain, or the `.zip` they are published as).

Each line becomes a validated Trade or an InvalidLine naming the file, the line and why.
"""

from __future__ import annotations

import contextlib
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import orjson

from tickpipe.core.symbols import InvalidSymbol, normalize_symbol
from tickpipe.core.trade import InvalidTrade, Side, Trade, new_trade
from tickpipe.ports import InvalidLine


class ReplayFormat(StrEnum):
    JSONL = "jsonl"
    BINANCE_CSV = "binance-csv"


_FORMAT_BY_SUFFIX = {
    ".jsonl": ReplayFormat.JSONL,
    ".ndjson": ReplayFormat.JSONL,
    ".json": ReplayFormat.JSONL,
    ".csv": ReplayFormat.BINANCE_CSV,
    ".zip": ReplayFormat.BINANCE_CSV,
}
# BTCUSDT-trades-2024-01-01.csv (daily) or BTCUSDT-trades-2024-01.zip (monthly)
_ARCHIVE_NAME = re.compile(r"([A-Za-z0-9]{2,32})-trades-")
# Archive times are epoch ms, or epoch us in newer files: 10^14 is year 5138 in ms and 1973 in us.
MICROSECOND_TIMES_FROM = 10**14
_TAKER_SIDE_BY_BUYER_IS_MAKER = {"true": Side.SELL, "false": Side.BUY}
_CSV_FIELDS = "id,price,qty,quote_qty,time,is_buyer_maker,is_best_match"
_MAX_REASON_CHARS = 200


def detect_format(path: Path) -> ReplayFormat:
    found = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if found is None:
        raise ValueError(
            f"cannot tell the format of {path} from its name: pass --format jsonl|binance-csv"
        )
    return found


def symbol_from_file_name(path: Path) -> str | None:
    matched = _ARCHIVE_NAME.match(path.name)
    return None if matched is None else normalize_symbol(matched[1])


class TradeFile:
    """One file's trades (a TradeRecording), read lazily line by line."""

    def __init__(
        self,
        path: Path,
        replay_format: ReplayFormat | None = None,
        *,
        symbol: str | None = None,
        now_us: Callable[[], int],
    ) -> None:
        self.path = path
        self.format = replay_format or detect_format(path)
        self._now_us = now_us
        self._symbol: str | None = None
        if self.format is ReplayFormat.BINANCE_CSV:
            try:
                self._symbol = normalize_symbol(symbol) if symbol else symbol_from_file_name(path)
            except InvalidSymbol as exc:
                raise ValueError(str(exc)) from None
            if self._symbol is None:
                raise ValueError(
                    f"cannot tell the symbol of {path}: pass --symbol, or keep Binance's file"
                    " name (BTCUSDT-trades-2024-01-01.csv)"
                )
        self.size_bytes = _size_bytes(path)  # raises OSError for a missing or unreadable file
        self.bytes_read = 0

    def __iter__(self) -> Iterator[Trade | InvalidLine]:
        name = str(self.path)
        with _open_lines(self.path) as lines:
            for line_number, raw in enumerate(lines, start=1):
                self.bytes_read += len(raw)
                try:
                    text = raw.decode("utf-8").strip()
                    if not text or (line_number == 1 and text.startswith("id,")):
                        continue  # blank, or the header some archives carry
                    yield self._parse(text)
                except (InvalidTrade, UnicodeDecodeError) as exc:
                    yield InvalidLine(name, line_number, str(exc)[:_MAX_REASON_CHARS])

    def _parse(self, text: str) -> Trade:
        if self._symbol is not None:
            return parse_binance_csv_line(text, self._symbol, self._now_us())
        return parse_json_line(text, self._now_us())


def parse_binance_csv_line(text: str, symbol: str, ingest_time_us: int) -> Trade:
    """`4172862847,42283.58000000,0.00109000,46.08910220,1704067200018,true,true`"""
    fields = text.split(",")
    if len(fields) != 7:
        raise InvalidTrade(f"expected 7 fields ({_CSV_FIELDS}), got {len(fields)}")
    trade_id, price, quantity, _quote_quantity, time_text, buyer_is_maker, _ = fields
    if not trade_id.isdigit():
        raise InvalidTrade(f"id {trade_id[:40]!r} is not a whole number")
    if not time_text.isdigit():
        raise InvalidTrade(f"time {time_text[:40]!r} is not epoch milliseconds or microseconds")
    time_value = int(time_text)
    side = _TAKER_SIDE_BY_BUYER_IS_MAKER.get(buyer_is_maker.strip().lower())
    if side is None:
        raise InvalidTrade(f"is_buyer_maker {buyer_is_maker[:40]!r} is not true or false")
    return new_trade(
        exchange="binance",
        symbol=symbol,
        trade_id=trade_id,
        price=price,
        quantity=quantity,
        side=side,
        exchange_time_us=time_value if time_value >= MICROSECOND_TIMES_FROM else time_value * 1000,
        ingest_time_us=ingest_time_us,
    )


def parse_json_line(text: str, ingest_time_us: int) -> Trade:
    """`{"exchange": "binance", "symbol": "BTCUSDT", "trade_id": "1", "price": "65000.10",
    "quantity": "0.001", "side": "buy", "exchange_time_us": 1714564800000000}`; prices may be
    JSON numbers (read exactly); `ingest_time_us` is kept when given, else the time of replay."""
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidTrade(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise InvalidTrade("not a JSON object")
    if isinstance(record.get("price"), float) or isinstance(record.get("quantity"), float):
        record = json.loads(text, parse_float=Decimal)  # the number's own digits, not a float
    raw_symbol = _field(record, "symbol", str)
    try:
        symbol = normalize_symbol(raw_symbol)
    except InvalidSymbol as exc:
        raise InvalidTrade(str(exc)) from None
    side = record.get("side")
    if side is not None and not isinstance(side, str):
        raise InvalidTrade(f"side {side!r} is not 'buy', 'sell' or null")
    ingest = record.get("ingest_time_us")
    return new_trade(
        exchange=_field(record, "exchange", str),
        symbol=symbol,
        trade_id=str(_field(record, "trade_id", (str, int))),
        price=_amount(record, "price"),
        quantity=_amount(record, "quantity"),
        side=side,
        exchange_time_us=_field(record, "exchange_time_us", int),
        ingest_time_us=ingest_time_us if ingest is None else _field(record, "ingest_time_us", int),
    )


def _field(record: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = record.get(name)
    if value is None:
        raise InvalidTrade(f"missing field {name!r}")
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidTrade(f"field {name!r} has the wrong type: {value!r:.40}")
    return value


def _amount(record: dict[str, Any], name: str) -> Decimal | str:
    value = _field(record, name, (str, int, Decimal))
    return value if isinstance(value, str) else Decimal(value)


def _size_bytes(path: Path) -> int:
    if path.suffix.lower() != ".zip":
        return path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        return _csv_member(archive, path).file_size


def _csv_member(archive: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    members = [info for info in archive.infolist() if info.filename.lower().endswith(".csv")]
    if len(members) != 1:
        raise ValueError(f"{path}: expected one .csv inside, found {len(members)}")
    return members[0]


@contextlib.contextmanager
def _open_lines(path: Path) -> Iterator[IO[bytes]]:
    """Binary lines of a file, or of the one CSV inside a zip archive."""
    if path.suffix.lower() != ".zip":
        with path.open("rb") as handle:
            yield handle
        return
    with zipfile.ZipFile(path) as archive, archive.open(_csv_member(archive, path)) as handle:
        yield handle


def open_recording(
    path: Path, replay_format: str | None, *, symbol: str | None, now_us: Callable[[], int]
) -> TradeFile:
    """A TradeFile, checked up front: ValueError or OSError names what is wrong with it."""
    return TradeFile(
        path,
        None if replay_format is None else ReplayFormat(replay_format),
        symbol=symbol,
        now_us=now_us,
    )
