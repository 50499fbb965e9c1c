"""The store's errors, and how a database URL is named in them (never with its password)."""

from __future__ import annotations

from urllib.parse import urlsplit


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or opened; the message is one line saying which and why."""


class MigrationFailed(RuntimeError):
    """A migration's SQL failed; nothing of that migration was applied."""


def describe_url(database_url: str) -> str:
    """`postgresql://user:secret@db:5432/ticks` -> `postgresql://user@db:5432/ticks`."""
    try:
        parts = urlsplit(database_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed database URL>"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"
