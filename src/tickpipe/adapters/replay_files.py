"""Recorded trades from files, for `tickpipe replay`: JSON lines of `tickpipe.v1.Trade` fields,
and the CSV of Binance's public trade archives (plain, or the `.zip` they are published as);
either may also be gzipped (`.jsonl.gz`, `.csv.gz`).

Each line becomes a validated Trade or an InvalidLine naming the file, the line and why. Input is
bounded: a line longer than `max_line_bytes` is an InvalidLine, skipped without ever being held
whole; a compressed file may expand at most MAX_EXPANSION_RATIO times (a zip bomb is refused);
a corrupt archive raises UnreadableRecording with one line naming the file.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import orjson

from tickpipe.core.symbols import InvalidSymbol, normalize_symbol
from tickpipe.core.trade import InvalidTrade, Side, Trade, new_trade
from tickpipe.ports import InvalidLine, UnreadableRecording


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
MAX_LINE_BYTES = 1024 * 1024  # far above any trade line; longer lines are skipped as invalid
# A compressed file may expand this many times, or up to EXPANSION_FREE_BYTES whatever the
# ratio. Trade CSV and JSON lines compress 5-10x; a zip bomb, 1000x.
MAX_EXPANSION_RATIO = 100
EXPANSION_FREE_BYTES = 64 * 1024 * 1024
_SKIP_CHUNK_BYTES = 64 * 1024
# What a damaged archive raises while it is read (bad CRC, truncated or garbled stream).
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile)


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def detect_format(path: Path) -> ReplayFormat:
    found = _FORMAT_BY_SUFFIX.get(
        Path(path.stem).suffix.lower() if _is_gzip(path) else path.suffix.lower()
    )
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
        max_line_bytes: int = MAX_LINE_BYTES,
        max_expansion_ratio: float = MAX_EXPANSION_RATIO,
    ) -> None:
        self.path = path
        self.format = replay_format or detect_format(path)
        self._now_us = now_us
        self._max_line_bytes = max_line_bytes
        self._max_expansion_ratio = max_expansion_ratio
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
        # OSError for a missing or unreadable file, ValueError for a bad or oversized archive
        self.size_bytes = _size_bytes(path, max_expansion_ratio)
        self.bytes_read = 0

    def __iter__(self) -> Iterator[Trade | InvalidLine]:
        name = str(self.path)
        line_number = 0
        try:
            with _open_stream(self.path, self._max_expansion_ratio) as stream:
                for raw, skipped_bytes in _bounded_lines(stream.handle, self._max_line_bytes):
                    line_number += 1
                    self.bytes_read = stream.position()
                    if skipped_bytes:
                        reason = (
                            f"line of {skipped_bytes:,} bytes is longer than the limit of"
                            f" {self._max_line_bytes:,}: skipped"
                        )
                        yield InvalidLine(name, line_number, reason)
                        continue
                    try:
                        text = raw.decode("utf-8").strip()
                        if not text or (line_number == 1 and text.startswith("id,")):
                            continue  # blank, or the header some archives carry
                        yield self._parse(text)
                    except (InvalidTrade, UnicodeDecodeError) as exc:
                        yield InvalidLine(name, line_number, str(exc)[:_MAX_REASON_CHARS])
        except _CORRUPT as exc:
            raise UnreadableRecording(
                f"{name}: corrupt or truncated archive after line {line_number}: {exc}"
            ) from None

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
    JSON numbers (read exactly); `ingest_time_us` is kept when given, else the time of replay.
    Protobuf's canonical JSON of tickpipe.v1.Trade is read too (`json_format.MessageToJson`):
    `{"tradeId": "1", "side": "SIDE_BUY", "exchangeTimeUs": "1714564800000000", ...}`."""
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidTrade(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise InvalidTrade("not a JSON object")
    if any(isinstance(record.get(name), float) for name in _AMOUNT_NAMES):
        record = json.loads(text, parse_float=Decimal)  # the number's own digits, not a float
    record = _proto_json_names(record)
    raw_symbol = _field(record, "symbol", str)
    try:
        symbol = normalize_symbol(raw_symbol)
    except InvalidSymbol as exc:
        raise InvalidTrade(str(exc)) from None
    side = record.get("side")
    if isinstance(side, str | int) and not isinstance(side, bool):
        side = _PROTO_SIDES.get(side, side)
    if side is not None and not isinstance(side, str):
        raise InvalidTrade(f"side {side!r} is not 'buy', 'sell' or null")
    for name in _INT64_NAMES:  # protobuf's JSON writes int64 as a string
        value = record.get(name)
        if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit():
            record[name] = int(value)
    ingest = record.get("ingest_time_us") or None  # 0: protobuf's default, i.e. not set
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


_AMOUNT_NAMES = ("price", "quantity")
_INT64_NAMES = ("exchange_time_us", "ingest_time_us")
# lowerCamelCase (protobuf's JSON name) -> the field's own name
_PROTO_NAMES = {
    "tradeId": "trade_id",
    "exchangeTimeUs": "exchange_time_us",
    "ingestTimeUs": "ingest_time_us",
}
# enum value names and numbers of tickpipe.v1.Side; unspecified is "no side"
_PROTO_SIDES: dict[object, str | None] = {
    "SIDE_BUY": "buy",
    "SIDE_SELL": "sell",
    "SIDE_UNSPECIFIED": None,
    1: "buy",
    2: "sell",
    0: None,
}


def _proto_json_names(record: dict[str, Any]) -> dict[str, Any]:
    """lowerCamelCase keys under their original names; both spellings at once is an error."""
    for camel, name in _PROTO_NAMES.items():
        if camel in record:
            if name in record:
                raise InvalidTrade(f"both {camel!r} and {name!r} are given")
            record[name] = record.pop(camel)
    return record


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


def _size_bytes(path: Path, max_expansion_ratio: float) -> int:
    """The bytes to read (for progress): the CSV inside a zip, whose declared size must be
    within the expansion limit; the file's own size otherwise."""
    if path.suffix.lower() != ".zip":
        return path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            member = _csv_member(archive, path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not a readable zip archive ({exc})") from None
    limit = expansion_limit(member.compress_size, max_expansion_ratio)
    if member.file_size > limit:
        raise ValueError(
            f"{path}: refused: {member.filename} would expand from {member.compress_size:,}"
            f" to {member.file_size:,} bytes (limit {limit:,}): not a trade archive"
        )
    return member.file_size


def expansion_limit(compressed_bytes: int, max_expansion_ratio: float) -> int:
    return max(EXPANSION_FREE_BYTES, int(compressed_bytes * max_expansion_ratio))


def _csv_member(archive: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    members = [info for info in archive.infolist() if info.filename.lower().endswith(".csv")]
    if len(members) != 1:
        raise ValueError(f"{path}: expected one .csv inside, found {len(members)}")
    return members[0]


class _LineReader(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


class _Stream:
    """A binary stream to read lines from, and how far into the input it is (progress)."""

    def __init__(self, handle: _LineReader, position: Callable[[], int]) -> None:
        self.handle = handle
        self.position = position


class _ExpansionBound:
    """Reads from a decompressing stream; UnreadableRecording once past `limit_bytes`."""

    def __init__(self, handle: _LineReader, limit_bytes: int, name: str, ratio: float) -> None:
        self._handle = handle
        self._limit_bytes = limit_bytes
        self._name = name
        self._ratio = ratio
        self.bytes_read = 0

    def readline(self, size: int = -1, /) -> bytes:
        line = self._handle.readline(size)
        self.bytes_read += len(line)
        if self.bytes_read > self._limit_bytes:
            raise UnreadableRecording(
                f"{self._name}: refused: expands past {self._limit_bytes:,} bytes"
                f" (more than {self._ratio:g}x its compressed size): not a trade file"
            )
        return line


@contextlib.contextmanager
def _open_stream(path: Path, max_expansion_ratio: float) -> Iterator[_Stream]:
    """A plain file; the one CSV inside a zip; or a gzipped file: decompressed lazily, with
    the expansion bounded."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            member = _csv_member(archive, path)
            limit = expansion_limit(member.compress_size, max_expansion_ratio)
            with archive.open(member) as handle:
                bounded = _ExpansionBound(handle, limit, str(path), max_expansion_ratio)
                yield _Stream(bounded, lambda: bounded.bytes_read)
    elif suffix == ".gz":
        limit = expansion_limit(path.stat().st_size, max_expansion_ratio)
        with path.open("rb") as raw, gzip.GzipFile(fileobj=raw) as handle:
            bounded = _ExpansionBound(handle, limit, str(path), max_expansion_ratio)
            yield _Stream(bounded, raw.tell)
    else:
        with path.open("rb") as handle:
            yield _Stream(handle, handle.tell)


def _bounded_lines(handle: _LineReader, max_line_bytes: int) -> Iterator[tuple[bytes, int]]:
    """(line, 0) for each line of at most `max_line_bytes` (newline not counted); (b"", its
    length) for a longer one, read past in chunks and never held whole."""
    while True:
        line = handle.readline(max_line_bytes + 1)
        if not line:
            return
        if len(line) <= max_line_bytes or line.endswith(b"\n"):
            yield line, 0
            continue
        skipped = len(line)
        while not line.endswith(b"\n"):
            line = handle.readline(_SKIP_CHUNK_BYTES)
            if not line:
                break
            skipped += len(line)
        yield b"", skipped - line.endswith(b"\n")  # the newline is not part of the line


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
