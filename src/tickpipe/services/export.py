"""`tickpipe export`: the stored trades of one symbol into a file, oldest first, streamed batch
by batch (constant memory), with a progress bar when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tickpipe.adapters.export_files import ExportFormat, open_writer
from tickpipe.adapters.store.export_reads import ExportQuery, StoredTrades


class ExportFailed(Exception):
    """The export cannot be done (missing pyarrow, unwritable path, unreachable database)."""


@dataclass(frozen=True, slots=True)
class ExportOptions:
    query: ExportQuery
    export_format: ExportFormat
    path: Path


@dataclass(frozen=True, slots=True)
class ExportSummary:
    rows: int
    path: Path
    duration_s: float

    def __str__(self) -> str:
        rate = self.rows / self.duration_s if self.duration_s > 0 else 0.0
        return (
            f"exported {self.rows:,} trades to {self.path} in {self.duration_s:.1f} s"
            f" ({rate:,.0f} rows/s)"
        )


async def export_trades(
    rows: StoredTrades, export_format: ExportFormat, path: Path, *, progress: bool | None = None
) -> ExportSummary:
    """Writes every row of `rows` to `path`; the file is complete when this returns."""
    from tqdm import tqdm

    started_s = time.monotonic()
    show = sys.stderr.isatty() if progress is None else progress
    total = await rows.count() if show else None
    try:
        writer = open_writer(export_format, path)
    except (ImportError, OSError) as exc:
        raise ExportFailed(str(exc)) from None
    written = 0
    try:
        with tqdm(total=total, unit="rows", unit_scale=True, disable=not show) as bar:
            async for batch in rows.batches():
                writer.write(batch)
                written += len(batch)
                bar.update(len(batch))
    except ValueError as exc:  # a decimal that the parquet column cannot hold exactly
        raise ExportFailed(str(exc)) from None
    finally:
        writer.close()
    return ExportSummary(written, path, time.monotonic() - started_s)
