"""Files of `tickpipe export`: JSON lines (exactly what `tickpipe replay` reads), CSV and
Parquet. Decimals stay exact: strings in JSON and CSV, decimal128(38, 18) in Parquet (a value
that would need more than 18 decimal places is refused rather than rounded).

Each writer takes batches and holds none of them: memory does not grow with the row count.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.trade import format_time_us

PARQUET_SCALE = 18
PARQUET_PRECISION = 38
PARQUET_MISSING = (
    "the parquet format needs pyarrow: pip install 'tickpipe[parquet]' (or use --format jsonl|csv)"
)
CSV_COLUMNS = (
    "time",
    "exchange",
    "symbol",
    "trade_id",
    "price",
    "quantity",
    "side",
    "sma",
    "signal",
    "exchange_time_us",
    "ingest_time_us",
)


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


class ExportWriter(Protocol):
    def write(self, batch: Sequence[ScoredTrade]) -> None: ...

    def close(self) -> None: ...


def replay_record(scored: ScoredTrade) -> dict[str, Any]:
    """A stored trade as one JSON line of tickpipe.v1.Trade fields, as `replay` reads them."""
    trade = scored.trade
    return {
        "exchange": trade.exchange,
        "symbol": trade.symbol,
        "trade_id": trade.trade_id,
        "price": format(trade.price, "f"),  # digits kept, never an exponent
        "quantity": format(trade.quantity, "f"),
        "side": None if trade.side is None else trade.side.value,
        "exchange_time_us": trade.exchange_time_us,
        "ingest_time_us": trade.ingest_time_us,
    }


class JsonLinesWriter:
    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = path.open("wb")

    def write(self, batch: Sequence[ScoredTrade]) -> None:
        self._file.write(b"".join(orjson.dumps(replay_record(s)) + b"\n" for s in batch))

    def close(self) -> None:
        self._file.close()


def _csv_row(scored: ScoredTrade) -> tuple[object, ...]:
    trade = scored.trade
    return (
        format_time_us(trade.exchange_time_us),
        trade.exchange,
        trade.symbol,
        trade.trade_id,
        format(trade.price, "f"),
        format(trade.quantity, "f"),
        "" if trade.side is None else trade.side.value,
        "" if scored.sma is None else str(scored.sma),
        scored.signal.value,
        trade.exchange_time_us,
        trade.ingest_time_us,
    )


class CsvWriter:
    def __init__(self, path: Path) -> None:
        self._file = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(CSV_COLUMNS)

    def write(self, batch: Sequence[ScoredTrade]) -> None:
        self._csv.writerows(_csv_row(s) for s in batch)

    def close(self) -> None:
        self._file.close()


def _exact(value: Decimal, what: str, trade_id: str) -> Decimal:
    scaled = value.quantize(Decimal(1).scaleb(-PARQUET_SCALE))
    if scaled != value or len(scaled.as_tuple().digits) > PARQUET_PRECISION:
        raise ValueError(
            f"{what} {value} of trade {trade_id} does not fit decimal({PARQUET_PRECISION},"
            f" {PARQUET_SCALE}) exactly; export it as jsonl or csv"
        )
    return scaled


class ParquetWriter:
    """One row group per batch; `time` is a UTC timestamp in microseconds."""

    def __init__(self, path: Path) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(PARQUET_MISSING) from None
        self._pa = pa
        amount = pa.decimal128(PARQUET_PRECISION, PARQUET_SCALE)
        self._schema = pa.schema(
            [
                ("time", pa.timestamp("us", tz="UTC")),
                ("exchange", pa.string()),
                ("symbol", pa.string()),
                ("trade_id", pa.string()),
                ("price", amount),
                ("quantity", amount),
                ("side", pa.string()),
                ("sma", pa.float64()),
                ("signal", pa.string()),
                ("ingest_time", pa.timestamp("us", tz="UTC")),
            ]
        )
        self._writer = pq.ParquetWriter(str(path), self._schema)

    def write(self, batch: Sequence[ScoredTrade]) -> None:
        trades = [s.trade for s in batch]
        columns = [
            [t.exchange_time_us for t in trades],
            [t.exchange for t in trades],
            [t.symbol for t in trades],
            [t.trade_id for t in trades],
            [_exact(t.price, "price", t.trade_id) for t in trades],
            [_exact(t.quantity, "quantity", t.trade_id) for t in trades],
            [None if t.side is None else t.side.value for t in trades],
            [None if s.sma is None else float(s.sma) for s in batch],
            [s.signal.value for s in batch],
            [t.ingest_time_us for t in trades],
        ]
        table = self._pa.Table.from_arrays(
            [
                self._pa.array(column, type=field.type)
                for column, field in zip(columns, self._schema, strict=True)
            ],
            schema=self._schema,
        )
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


def open_writer(export_format: ExportFormat, path: Path) -> ExportWriter:
    """ImportError (with the fix) for parquet without pyarrow; OSError when `path` can't open."""
    if export_format is ExportFormat.PARQUET:
        return ParquetWriter(path)
    if export_format is ExportFormat.CSV:
        return CsvWriter(path)
    return JsonLinesWriter(path)
