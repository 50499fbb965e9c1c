"""JSON decoding that keeps every number exact.

Kraken sends prices as JSON numbers (`"price":65000.10`); a float would turn that into
65000.1 or worse. Here every number with a fraction or exponent becomes a `Decimal` built from
its own text, and integers stay `int`, so the stored decimal is exactly what was received.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from tickpipe.adapters.exchanges.frames import FrameRejected, RejectReason

_MAX_DETAIL_CHARS = 80


def _constant(name: str) -> Decimal:
    # Python's json accepts NaN/Infinity; as Decimals they are later rejected as invalid prices,
    # which names the real problem better than "invalid JSON".
    return Decimal(name)


def loads_exact(frame: str | bytes) -> Any:
    """Decodes one frame; raises FrameRejected(INVALID_JSON) on anything that is not JSON."""
    try:
        return json.loads(frame, parse_float=Decimal, parse_constant=_constant)
    except (ValueError, RecursionError) as exc:
        # ValueError covers malformed JSON, invalid UTF-8 and integers beyond the digit limit;
        # RecursionError covers absurdly deep nesting.
        raise FrameRejected(RejectReason.INVALID_JSON, str(exc)[:_MAX_DETAIL_CHARS]) from None
