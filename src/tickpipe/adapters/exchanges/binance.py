"""Binance spot: `<symbol>@trade` streams over combined-stream connections.

The configured URL is the base (`wss://stream.binance.com:9443`); this module adds
`/stream?streams=btcusdt@trade/...`, at most 1,024 streams per connection. Subscribing through
the URL means we send no JSON messages at all, which keeps us far inside Binance's 5 incoming
messages per second (our keepalive pings and pongs are the only traffic). Binance answers an
unknown symbol with silence rather than an error, so symbols are at least checked for shape here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tickpipe.adapters.exchanges import fields
from tickpipe.adapters.exchanges.decimal_json import loads_exact
from tickpipe.adapters.exchanges.feed import (
    ConnectionPlan,
    SubscriptionRejected,
    Venue,
    exchange_source,
)
from tickpipe.adapters.exchanges.frames import EventKind, FrameRejected, ParseResult, RejectReason
from tickpipe.core.symbols import normalize_symbol
from tickpipe.core.trade import Side, Trade

EXCHANGE = "binance"
DEFAULT_URL = "wss://stream.binance.com:9443"
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT")
MAX_STREAMS_PER_CONNECTION = 1_024
# Binance cuts every connection at 24 h; we rotate an hour early, at a moment of our choosing.
MAX_CONNECTION_AGE_S = 23 * 3_600.0

_RAW_SYMBOL = re.compile(r"[A-Za-z0-9]{2,20}")
_TAKER_SIDE_BY_BUYER_IS_MAKER = {True: Side.SELL, False: Side.BUY}


def stream_name(raw_symbol: str) -> str:
    return f"{raw_symbol.lower()}@trade"


def plan_connections(
    raw_symbols: Sequence[str],
    base_url: str,
    max_streams: int = MAX_STREAMS_PER_CONNECTION,
) -> list[ConnectionPlan]:
    """One combined-stream URL per `max_streams` symbols; no subscribe messages."""
    bad = [raw for raw in raw_symbols if not _RAW_SYMBOL.fullmatch(raw)]
    if bad:
        raise SubscriptionRejected(
            EXCHANGE, bad, "not a Binance symbol (letters and digits only, like BTCUSDT)"
        )
    unique = list(dict.fromkeys(raw.upper() for raw in raw_symbols))
    base = _base_url(base_url)
    plans = []
    for start in range(0, len(unique), max_streams):
        chunk = tuple(unique[start : start + max_streams])
        streams = "/".join(stream_name(raw) for raw in chunk)
        plans.append(
            ConnectionPlan(
                url=f"{base}/stream?streams={streams}",
                subscribe_messages=(),
                raw_symbols=chunk,
                symbols=frozenset(normalize_symbol(raw) for raw in chunk),
            )
        )
    return plans


def _base_url(url: str) -> str:
    # Forgive a URL that already names an endpoint path: we always use /stream.
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for suffix in ("/stream", "/ws"):
        path = path.removesuffix(suffix)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


# A trade on a combined stream (https://developers.binance.com, "Trade Streams"):
# {"stream":"bnbbtc@trade",
#  "data":{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",
#          "T":1672515782136,"m":true,"M":true}}
# "m": is the buyer the market maker? -> the taker sold. "T" is the trade time in ms.
# Before Binance closes a connection it may send
# {"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}
def parse_frame(frame: str | bytes, ingest_time_us: int) -> ParseResult:
    try:
        message = fields.mapping(loads_exact(frame), "frame")
        payload = fields.mapping(message["data"], "data") if "data" in message else message
        return _parse_payload(payload, ingest_time_us)
    except FrameRejected as exc:
        return ParseResult.rejected(exc)


def _parse_payload(payload: Mapping[str, Any], ingest_time_us: int) -> ParseResult:
    event_type = payload.get("e")
    if event_type == "trade":
        return ParseResult(trades=(_trade(payload, ingest_time_us),))
    if event_type == "serverShutdown":
        return ParseResult.event(EventKind.SHUTDOWN, "serverShutdown")
    if event_type is None and "result" in payload and "id" in payload:
        return ParseResult.event(EventKind.ACK)  # {"result":null,"id":1}
    if event_type is None and ("error" in payload or "msg" in payload):
        # {"error":{"code":2,"msg":"Invalid request: ..."},"id":1} or {"code":2,"msg":"..."}
        error = payload.get("error", payload)
        detail = error.get("msg") if isinstance(error, dict) else error
        return ParseResult.event(EventKind.ERROR, str(detail)[:200])
    raise FrameRejected(RejectReason.UNEXPECTED_SHAPE, f"event {fields.shown(event_type)}")


def _trade(payload: Mapping[str, Any], ingest_time_us: int) -> Trade:
    _, symbol = fields.raw_symbol(fields.required(payload, "s"))
    buyer_is_maker = fields.required(payload, "m")
    if not isinstance(buyer_is_maker, bool):
        raise FrameRejected(RejectReason.INVALID_SIDE, f"m={fields.shown(buyer_is_maker)}")
    return fields.build_trade(
        exchange=EXCHANGE,
        symbol=symbol,
        trade_id=fields.trade_id(fields.required(payload, "t")),
        price=fields.exact_decimal(fields.required(payload, "p"), RejectReason.INVALID_PRICE),
        quantity=fields.exact_decimal(fields.required(payload, "q"), RejectReason.INVALID_QUANTITY),
        side=_TAKER_SIDE_BY_BUYER_IS_MAKER[buyer_is_maker],
        exchange_time_us=fields.plausible_time_us(
            fields.epoch_ms_to_us(fields.required(payload, "T")), ingest_time_us
        ),
        ingest_time_us=ingest_time_us,
    )


VENUE = Venue(
    name=EXCHANGE,
    default_url=DEFAULT_URL,
    plan_connections=plan_connections,
    parse_frame=parse_frame,
    sequential_ids=True,
    heartbeats=False,  # Binance sends only WebSocket pings; a quiet symbol is not a dead link
    max_connection_age_s=MAX_CONNECTION_AGE_S,
)


# binance_source(raw_symbols, url, idle_timeout_s): trades of Binance spot symbols (`BTCUSDT`).
binance_source = functools.partial(exchange_source, VENUE)
