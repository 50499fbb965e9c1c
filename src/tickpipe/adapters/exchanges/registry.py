"""Venues by name: adding a venue means writing its module, nothing else.

A venue is the module `tickpipe.adapters.exchanges.<name>`, or any module a package names under
the `tickpipe.venues` entry-point group (`name = "package.module"`). It exposes
`DEFAULT_SYMBOLS` (a tuple of symbols in its own notation) and either `VENUE` (a `feed.Venue`:
pure subscribe/parse functions run by the shared reconnect loop) or, for a source that is not a
WebSocket feed, `open_source(raw_symbols, options) -> TradeSource`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from tickpipe.ports import TradeSource

ENTRY_POINT_GROUP = "tickpipe.venues"
_PACKAGE = "tickpipe.adapters.exchanges"


class UnknownVenue(ValueError):
    """No module provides this venue."""


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """What a venue's source may need beyond its symbols (each takes what applies to it)."""

    url: str | None  # None: the venue's public endpoint
    idle_timeout_s: float = 30.0
    sim_rate: float = 20.0
    sim_seed: int | None = None
    run_start_us: int = 1


def _is_venue(module: ModuleType) -> bool:
    return hasattr(module, "DEFAULT_SYMBOLS") and (
        hasattr(module, "VENUE") or callable(getattr(module, "open_source", None))
    )


def _entry_points() -> dict[str, str]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {entry.name.lower(): entry.value for entry in found}


@functools.cache
def venue_module(name: str) -> ModuleType:
    """The module of venue `name`; raises UnknownVenue listing the venues there are."""
    target = _entry_points().get(name) or f"{_PACKAGE}.{name}"
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name is None or not target.startswith(exc.name):
            raise  # the venue's module exists but one of its own imports is missing
        module = None
    if module is None or not _is_venue(module):
        raise UnknownVenue(f"unknown venue {name!r}; known: {', '.join(known_venues())}")
    return module


def known_venues() -> list[str]:
    """Every venue there is: the modules of this package that are venues, and entry points."""
    package = importlib.import_module(_PACKAGE)
    names = set(_entry_points())
    for info in pkgutil.iter_modules(package.__path__):
        if _is_venue(importlib.import_module(f"{_PACKAGE}.{info.name}")):
            names.add(info.name)
    return sorted(names)


def default_symbols(name: str) -> tuple[str, ...]:
    return tuple(venue_module(name).DEFAULT_SYMBOLS)


def open_venue(name: str, raw_symbols: Sequence[str], options: SourceOptions) -> TradeSource:
    """The trade source of one venue; ValueError for unusable symbols or URL."""
    module = venue_module(name)
    opener = getattr(module, "open_source", None)
    if callable(opener):
        source: TradeSource = opener(raw_symbols, options)
        return source
    from tickpipe.adapters.exchanges.feed import exchange_source

    return exchange_source(module.VENUE, raw_symbols, options.url, options.idle_timeout_s)
