"""Schema migrations on SQLite and PostgreSQL: once each, concurrency-safe, clear failures."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest

from fixtures.postgres import database_url
from tickpipe.adapters.store import migrate as migrate_module
from tickpipe.adapters.store.errors import MigrationFailed, StoreUnavailable
from tickpipe.adapters.store.migrate import (
    Migration,
    load_migrations,
    migrate,
    sqlite_statements,
)
from tickpipe.adapters.store.postgres import open_postgres_store

UNREACHABLE_URL = "postgresql://postgres:secret@127.0.0.1:1/test"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.infra)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind (the SQLite file's folder does not exist yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'ticks.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


async def query(url: str, sql: str) -> list[tuple[object, ...]]:
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            return connection.execute(sql).fetchall()
    connection = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


async def ledger(url: str) -> list[str]:
    rows = await query(url, "SELECT version FROM schema_migrations ORDER BY version")
    return [str(row[0]) for row in rows]


async def test_second_run_applies_nothing(empty_url: str) -> None:
    """The first run applies 0001 onwards and records them; the second finds nothing to do."""
    applied = await migrate(empty_url)
    assert applied[0] == "0001"
    assert applied == sorted(applied)
    assert await ledger(empty_url) == applied
    assert await migrate(empty_url) == []
    assert await ledger(empty_url) == applied


async def test_concurrent_runs_apply_each_migration_once(empty_url: str) -> None:
    """Runs racing on separate connections all succeed; exactly one of them applies the schema."""
    results = await asyncio.gather(*(migrate(empty_url) for _ in range(3)))
    applying = [result for result in results if result]
    assert len(applying) == 1
    assert applying[0][0] == "0001"
    assert await ledger(empty_url) == applying[0]
    assert await query(empty_url, "SELECT count(*) FROM trades") == [(0,)]


async def test_failed_migration_is_rolled_back_and_not_recorded(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration whose SQL fails raises MigrationFailed naming it; none of it is kept."""
    dialect = migrate_module.dialect_of(empty_url)
    broken = Migration(
        "0999", "0999_broken.sql", "CREATE TABLE half (x int); SELEC nonsense;", None
    )
    real = load_migrations(dialect)
    monkeypatch.setattr(migrate_module, "load_migrations", lambda _: [*real, broken])
    with pytest.raises(MigrationFailed, match=r"0999_broken\.sql"):
        await migrate(empty_url)
    monkeypatch.undo()
    if dialect == "sqlite":  # the whole run is one transaction: nothing at all was kept
        assert await query(empty_url, "SELECT name FROM sqlite_master") == []
        assert await migrate(empty_url) == [m.version for m in real]
    else:  # one transaction per migration: those before the broken one stay applied
        assert await query(empty_url, "SELECT 1 FROM pg_class WHERE relname = 'half'") == []
        assert "0999" not in await ledger(empty_url)
        assert await migrate(empty_url) == []


@pytest.mark.infra
async def test_plain_postgres_gets_a_table_with_the_symbol_time_index(
    empty_postgres_url: str,
) -> None:
    """Without TimescaleDB `trades` is a plain, time-indexed table; with it, a hypertable."""
    await migrate(empty_postgres_url)
    [(timescale_available,)] = await query(
        empty_postgres_url,
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
    )
    rows = await query(
        empty_postgres_url, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'trades'"
    )
    indexes = {str(name): str(definition) for name, definition in rows}
    assert 'ON public.trades USING btree (symbol, "time" DESC)' in indexes["trades_symbol_time"]
    assert '(exchange, symbol, "time" DESC)' in indexes["trades_stream_time"]
    if timescale_available:
        assert "0003" in await ledger(empty_postgres_url)
        hypertables = await query(
            empty_postgres_url,
            "SELECT compression_enabled FROM timescaledb_information.hypertables"
            " WHERE hypertable_name = 'trades'",
        )
        assert hypertables == [(True,)]
    else:
        assert await ledger(empty_postgres_url) == ["0001", "0002"]  # 0003 stays pending
        assert await query(
            empty_postgres_url, "SELECT relkind::text FROM pg_class WHERE relname = 'trades'"
        ) == [("r",)]


def test_timescaledb_step_is_a_conditional_postgres_migration() -> None:
    """0003 (hypertable + compression) requires timescaledb; SQLite has no such step."""
    postgres = {m.version: m for m in load_migrations("postgres")}
    assert postgres["0003"].requires_extension == "timescaledb"
    assert postgres["0001"].requires_extension is None
    assert "create_hypertable" in postgres["0003"].sql
    assert all(m.requires_extension is None for m in load_migrations("sqlite"))


@pytest.mark.parametrize(
    "url",
    ["mysql://root:secret@db/ticks", "", "redis://127.0.0.1:6379/0", "sqlite:relative.db"],
)
async def test_unsupported_url_is_a_clear_value_error(url: str) -> None:
    """Anything but postgresql://, postgres:// or sqlite:///path is refused, password unsaid."""
    with pytest.raises(ValueError, match="URL") as raised:
        await migrate(url)
    assert "secret" not in str(raised.value)


async def test_unreachable_postgres_is_store_unavailable_quickly() -> None:
    """A server that refuses connections gives one clear line at once, without the password."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        await migrate(UNREACHABLE_URL)
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "127.0.0.1:1" in message
    assert "secret" not in message
    assert "\n" not in message


async def test_store_on_unreachable_postgres_is_unavailable() -> None:
    """open_postgres_store fails the same way as migrate on a dead server."""
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1\b"):
        await open_postgres_store(UNREACHABLE_URL)


@pytest.mark.infra
async def test_missing_postgres_database_is_store_unavailable(postgres_url: str) -> None:
    """On a server that answers, a database that does not exist is named in the error."""
    with pytest.raises(StoreUnavailable, match="tickpipe_test_missing"):
        await migrate(database_url(postgres_url, "tickpipe_test_missing"))


@pytest.mark.infra
async def test_store_on_unmigrated_postgres_says_to_migrate(empty_postgres_url: str) -> None:
    """Opening a store on a database without `trades` says to run `tickpipe migrate`."""
    with pytest.raises(StoreUnavailable, match="tickpipe migrate"):
        await open_postgres_store(empty_postgres_url)


async def test_unopenable_sqlite_file_is_store_unavailable(tmp_path: Path) -> None:
    """A SQLite path that cannot be a database file (here a folder) is StoreUnavailable."""
    with pytest.raises(StoreUnavailable, match="cannot be opened"):
        await migrate(f"sqlite:///{tmp_path}")


def test_sqlite_script_splits_on_statement_ends_only() -> None:
    """Semicolons inside comments and strings do not split; comment-only tails are dropped."""
    script = (
        "-- a; comment\nCREATE TABLE a (x TEXT DEFAULT 'p;q');\nCREATE INDEX i ON a (x);\n-- end;\n"
    )
    assert sqlite_statements(script) == [
        "-- a; comment\nCREATE TABLE a (x TEXT DEFAULT 'p;q');",
        "CREATE INDEX i ON a (x);",
    ]
