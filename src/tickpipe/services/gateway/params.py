"""Query parameters of the analytics routes: times (ISO-8601 or epoch milliseconds) and the
opaque history cursor. Each raises ValueError with a message fit for a 422."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime

from tickpipe.core.trade import MAX_TIME_US, datetime_to_time_us
from tickpipe.ports import END_OF_HISTORY, HistoryKey

_EPOCH_MS = re.compile(r"\d{1,16}")
_CURSOR = re.compile(r"v1:(\d{1,20}):(\d{1,19})")


def parse_time_us(text: str, name: str) -> int:
    """`2024-05-01T12:00:00Z`, `2024-05-01` (UTC unless an offset is given) or epoch
    milliseconds like `1714564800000`; between 1970 and 2100."""
    text = text.strip()
    if _EPOCH_MS.fullmatch(text):
        time_us = int(text) * 1000
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{name} {text[:40]!r} is neither ISO-8601 nor epoch milliseconds"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        time_us = datetime_to_time_us(moment)
    if not 0 <= time_us <= MAX_TIME_US:
        raise ValueError(f"{name} {text[:40]!r} is outside 1970..2100")
    return time_us


def encode_cursor(key: HistoryKey) -> str:
    raw = f"v1:{key.time_us}:{key.row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> HistoryKey:
    """Inverse of encode_cursor; ValueError on anything it did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    matched = _CURSOR.fullmatch(raw)
    if matched is None:
        raise ValueError("invalid cursor: pass back the X-Next-Cursor of a previous answer")
    key = HistoryKey(int(matched[1]), int(matched[2]))
    if key > END_OF_HISTORY:
        raise ValueError("invalid cursor: pass back the X-Next-Cursor of a previous answer")
    return key
