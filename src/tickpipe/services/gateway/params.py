"""Query parameters of the analytics routes: times and the history cursor, in exactly the forms
the OpenAPI document declares (schemas.TIME_PARAMETER_SCHEMA, CURSOR_PATTERN). Each raises
ValueError with a message fit for a 422."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from tickpipe.core.trade import MAX_TIME_US, datetime_to_time_us
from tickpipe.ports import END_OF_HISTORY, HistoryKey

_EPOCH_MS = re.compile(r"[0-9]{1,13}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# RFC 3339 date-time (JSON Schema's `date-time`): seconds and an offset are required.
_DATE_TIME = re.compile(
    r"(?P<seconds>[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?P<fraction>\.[0-9]+)?(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_CURSOR = re.compile(r"([0-9]{1,19})_([0-9]{1,19})")
TIME_FORMS = "an RFC 3339 date-time (2024-05-01T12:00:00Z), a date or epoch milliseconds"


def parse_time_us(text: str, name: str) -> int:
    """`2024-05-01T12:00:00Z` (RFC 3339), `2024-05-01` (UTC midnight) or epoch milliseconds
    like `1714564800000`. Times before 1970 or after 2100 count as those bounds."""
    if _EPOCH_MS.fullmatch(text):
        return min(int(text) * 1000, MAX_TIME_US)
    moment = _parse_iso(text)
    if moment is None:
        raise ValueError(f"{name} {text[:40]!r} is not {TIME_FORMS}")
    return min(max(datetime_to_time_us(moment), 0), MAX_TIME_US)


def _parse_iso(text: str) -> datetime | None:
    if _DATE.fullmatch(text):
        iso = text
    elif matched := _DATE_TIME.fullmatch(text):
        fraction = (matched["fraction"] or "")[:7]  # microseconds; finer digits are dropped
        iso = f"{matched['seconds']}{fraction}{matched['offset']}".upper()
    else:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:  # 2024-02-30, 25:00:00, ...
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def encode_cursor(key: HistoryKey) -> str:
    return f"{key.time_us}_{key.row_id}"


def decode_cursor(cursor: str) -> HistoryKey:
    """Inverse of encode_cursor. Any key is a place in history: past the end means the end."""
    matched = _CURSOR.fullmatch(cursor)
    if matched is None:
        raise ValueError("invalid cursor: pass back the X-Next-Cursor of a previous answer")
    return HistoryKey(
        min(int(matched[1]), END_OF_HISTORY.time_us), min(int(matched[2]), END_OF_HISTORY.row_id)
    )
