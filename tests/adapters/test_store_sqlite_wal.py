"""The SQLite store checkpoints its WAL on a connection of its own, not inside the writer's
commits, and the WAL stays bounded by those checkpoints."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fixtures.trades import make_trade
from tickpipe.adapters.store import sqlite as sqlite_module
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.sqlite import SqliteStore, open_sqlite_store
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal

BATCH = 5_000


def batch(index: int) -> list[ScoredTrade]:
    first = index * BATCH + 1
    return [
        ScoredTrade(make_trade(n, price=f"{100 + n % 7}.25"), None, Signal.HOLD)
        for n in range(first, first + BATCH)
    ]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path}/wal.db"
    await migrate(url)
    opened = await open_sqlite_store(url)
    yield opened
    await opened.close()


async def checkpoint_settled(store: SqliteStore) -> None:
    if store._checkpoint is not None:
        await store._checkpoint


async def test_the_writer_leaves_checkpoints_to_the_checkpoint_connection(
    store: SqliteStore,
) -> None:
    """The writer connection checkpoints only past its raised bound; a full batch starts a
    checkpoint elsewhere, and every row stays readable."""
    pages = await store._run(lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert pages == sqlite_module._WRITER_AUTOCHECKPOINT_PAGES
    assert store.checkpoints == 0
    assert await store.write(batch(0)) == BATCH
    await checkpoint_settled(store)
    assert store.checkpoints == 1
    rows = await store._read(lambda db: db.execute("SELECT count(*) FROM trades").fetchone()[0])
    assert rows == BATCH


async def test_small_writes_checkpoint_once_enough_rows_are_written(store: SqliteStore) -> None:
    """No checkpoint per small batch: one once the rows written since the last one add up."""
    rows = batch(0)
    step = BATCH // 10
    for start in range(0, BATCH - step, step):
        await store.write(rows[start : start + step])
        await checkpoint_settled(store)
    assert store.checkpoints == 0
    await store.write(rows[BATCH - step :])
    await checkpoint_settled(store)
    assert store.checkpoints == 1


async def test_the_wal_is_reused_after_background_checkpoints(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Batch after batch, the WAL file stays the size of about one batch: each checkpoint lets
    the next transaction start the WAL over (the writer's own bound is far larger)."""
    sizes = []
    for index in range(6):
        await store.write(batch(index))
        await checkpoint_settled(store)
        sizes.append(os.path.getsize(tmp_path / "wal.db-wal"))
    assert store.checkpoints == 6
    assert max(sizes) < 2 * sizes[0], sizes


async def test_close_waits_for_a_checkpoint_under_way(tmp_path: Path) -> None:
    """Closing right after a write that started a checkpoint closes every connection cleanly:
    the file then holds every row and no WAL is left behind."""
    url = f"sqlite:///{tmp_path}/wal.db"
    await migrate(url)
    store = await open_sqlite_store(url)
    await store.write(batch(0))
    assert store._checkpoint is not None
    await store.close()
    assert not (tmp_path / "wal.db-wal").exists()
    reopened = await open_sqlite_store(url)
    try:
        rows = await reopened._read(
            lambda db: db.execute("SELECT count(*) FROM trades").fetchone()[0]
        )
    finally:
        await reopened.close()
    assert rows == BATCH
