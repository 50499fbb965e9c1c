"""Versioned schema migrations: `sql/<dialect>/NNNN_name.sql`, applied in order, each once.

Applied versions are rows of `schema_migrations`. A run holds a lock for its whole length
(PostgreSQL: a session advisory lock; SQLite: `BEGIN IMMEDIATE`), so concurrent runs apply every
migration once. A file whose first line is `-- requires: timescaledb` is applied only where that
extension can be enabled; elsewhere it stays pending (not recorded), so installing TimescaleDB
later and re-running `migrate` converts the existing table.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import asyncpg

from tickpipe.adapters.store.errors import MigrationFailed, StoreUnavailable, describe_url
from tickpipe.adapters.store.postgres import connect_postgres, unavailable
from tickpipe.adapters.store.sqlite import sqlite_path
from tickpipe.telemetry.logs import fields

Dialect = Literal["postgres", "sqlite"]

_log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"(?P<version>\d{4})_\w+\.sql")
_REQUIRES = re.compile(r"--\s*requires:\s*(?P<extension>\w+)")
_KNOWN_EXTENSIONS = frozenset({"timescaledb"})
_COMMENT = re.compile(r"--[^\n]*")
# Any fixed bigint; advisory locks are per database, so this only excludes other migrators.
_ADVISORY_LOCK_KEY = 7_343_205_198_337_118_001

_POSTGRES_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_SQLITE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""
SQLITE_BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # "0001"
    name: str  # "0001_trades.sql"
    sql: str
    requires_extension: str | None


def dialect_of(database_url: str) -> Dialect:
    """`postgresql://` / `postgres://` -> postgres, `sqlite:///path` -> sqlite; else ValueError."""
    if database_url.startswith(("postgresql://", "postgres://")):
        return "postgres"
    if database_url.startswith("sqlite:"):
        return "sqlite"
    raise ValueError(
        f"unsupported database URL {describe_url(database_url)!r}: "
        "expected postgresql://user@host:port/name or sqlite:///path"
    )


def load_migrations(dialect: Dialect) -> list[Migration]:
    """The dialect's migration files, in version order."""
    folder = resources.files("tickpipe.adapters.store") / "sql" / dialect
    migrations: dict[str, Migration] = {}
    for entry in folder.iterdir():
        matched = _FILE_NAME.fullmatch(entry.name)
        if matched is None:
            continue
        version = matched["version"]
        if version in migrations:
            raise RuntimeError(f"two {dialect} migrations have version {version}")
        sql = entry.read_text(encoding="utf-8")
        required = _REQUIRES.match(sql)
        extension = required["extension"] if required else None
        if extension is not None and extension not in _KNOWN_EXTENSIONS:
            raise RuntimeError(f"{entry.name} requires unknown extension {extension!r}")
        migrations[version] = Migration(version, entry.name, sql, extension)
    return [migrations[version] for version in sorted(migrations)]


async def migrate(database_url: str) -> list[str]:
    """Applies the pending migrations; returns the versions applied now ([] when up to date).

    Raises ValueError for an unsupported URL, StoreUnavailable when the database cannot be
    reached or opened, MigrationFailed when a migration's SQL fails (that one is rolled back).
    """
    if dialect_of(database_url) == "postgres":
        return await _migrate_postgres(database_url)
    return await asyncio.to_thread(_migrate_sqlite, sqlite_path(database_url))


async def _migrate_postgres(database_url: str) -> list[str]:
    connection = await connect_postgres(database_url)
    try:
        return await _apply_postgres(connection)
    except (OSError, asyncpg.InterfaceError) as exc:  # the connection dropped mid-run
        raise unavailable(describe_url(database_url), exc) from exc
    finally:
        await connection.close()  # also releases the advisory lock


async def _apply_postgres(connection: Any) -> list[str]:
    applied_now: list[str] = []
    await connection.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK_KEY)
    await connection.execute(_POSTGRES_LEDGER)
    rows = await connection.fetch("SELECT version FROM schema_migrations")
    applied = {row["version"] for row in rows}
    for migration in load_migrations("postgres"):
        if migration.version in applied:
            continue
        extension = migration.requires_extension
        if extension is not None and not await _enable_extension(connection, extension):
            _log.info("migration %s skipped: %s is not available", migration.name, extension)
            continue
        try:
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
                )
        except asyncpg.PostgresError as exc:
            raise MigrationFailed(f"migration {migration.name} failed: {exc}") from exc
        _log.info(
            "applied migration %s",
            migration.name,
            extra=fields("migration_applied", migration=migration.name),
        )
        applied_now.append(migration.version)
    return applied_now


async def _enable_extension(connection: Any, extension: str) -> bool:
    """True when the extension is (now) created in this database; False, logged, if it cannot be."""
    available = await connection.fetchrow(
        "SELECT installed_version FROM pg_available_extensions WHERE name = $1", extension
    )
    if available is None:
        return False
    if available["installed_version"] is not None:
        return True
    try:
        async with connection.transaction():
            # The name is one of _KNOWN_EXTENSIONS (checked in load_migrations), never input.
            await connection.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
    except asyncpg.PostgresError as exc:
        # e.g. installed but not in shared_preload_libraries, or no privilege to create it
        _log.warning("extension %s is installed but cannot be enabled: %s", extension, exc)
        return False
    return True


def _migrate_sqlite(path: str) -> list[str]:
    location = f"sqlite:///{path}"
    try:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailable(f"SQLite database {location} cannot be opened: {exc}") from exc
    try:
        try:
            connection.execute("BEGIN IMMEDIATE")  # the write lock, held until COMMIT
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite database {location} cannot be opened: {exc}") from exc
        try:
            applied_now = _apply_sqlite(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    finally:
        connection.close()
    return applied_now


def _apply_sqlite(connection: sqlite3.Connection) -> list[str]:
    connection.execute(_SQLITE_LEDGER)
    applied = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
    applied_now: list[str] = []
    for migration in load_migrations("sqlite"):
        if migration.version in applied or migration.requires_extension is not None:
            continue
        try:
            for statement in sqlite_statements(migration.sql):
                connection.execute(statement)
        except sqlite3.Error as exc:
            raise MigrationFailed(f"migration {migration.name} failed: {exc}") from exc
        connection.execute(
            "INSERT INTO schema_migrations (version) VALUES (?)", (migration.version,)
        )
        _log.info(
            "applied migration %s",
            migration.name,
            extra=fields("migration_applied", migration=migration.name),
        )
        applied_now.append(migration.version)
    return applied_now


def sqlite_statements(script: str) -> list[str]:
    """A script split into single statements: sqlite3 runs one per call, and `executescript`
    would COMMIT first, giving up the lock."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if _COMMENT.sub("", pending).strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    return statements
