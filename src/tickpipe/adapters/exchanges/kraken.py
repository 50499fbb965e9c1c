"""Kraken spot WebSocket v2: the `trade` channel.

Prices and sizes arrive as JSON numbers (`"price":65000.10`); they are decoded straight from
their text into Decimals, never through float.

We subscribe with `snapshot: true` (the docs disagree on the default, so it is set explicitly):
on every (re)connection Kraken replays the last 50 trades of each symbol. Trade ids count up by
one per symbol, so the replayed trades we already emitted are dropped by id, and those we missed
while disconnected fill the gap instead of being lost. On the first connection the snapshot is
recent history, which warms the indicators up at once.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tickpipe.adapters.exchanges import fields
from tickpipe.adapters.exchanges.decimal_json import loads_exact
from tickpipe.adapters.exchanges.feed import (
    ConnectionPlan,
    SubscriptionRejected,
    Venue,
    exchange_source,
)
from tickpipe.adapters.exchanges.frames import (
    EventKind,
    FrameRejected,
    ParseResult,
    Rejection,
    RejectReason,
)
from tickpipe.core.symbols import normalize_symbol
from tickpipe.core.trade import Side, Trade

EXCHANGE = "kraken"
DEFAULT_URL = "wss://ws.kraken.com/v2"
DEFAULT_SYMBOLS = ("BTC/USD", "ETH/USD")
SNAPSHOT = True

_PAIR = re.compile(r"[A-Za-z0-9]+/[A-Za-z0-9]+")
_TAKER_SIDE = {"buy": Side.BUY, "sell": Side.SELL}


def pairs(raw_symbols: Sequence[str]) -> list[str]:
    bad = [raw for raw in raw_symbols if not _PAIR.fullmatch(raw)]
    if bad:
        raise SubscriptionRejected(EXCHANGE, bad, "not a Kraken v2 pair (like BTC/USD)")
    return list(dict.fromkeys(raw.upper() for raw in raw_symbols))


def subscribe_messages(raw_symbols: Sequence[str]) -> list[str]:
    # {"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"],"snapshot":true}}
    params = {"channel": "trade", "symbol": pairs(raw_symbols), "snapshot": SNAPSHOT}
    return [json.dumps({"method": "subscribe", "params": params, "req_id": 1})]


def plan_connections(raw_symbols: Sequence[str], url: str) -> list[ConnectionPlan]:
    chosen = pairs(raw_symbols)
    return [
        ConnectionPlan(
            url=url,
            subscribe_messages=tuple(subscribe_messages(chosen)),
            raw_symbols=tuple(chosen),
            symbols=frozenset(normalize_symbol(pair) for pair in chosen),
        )
    ]


# Trades (docs.kraken.com, Spot WebSocket v2, "Trade"); snapshot and update share the shape:
# {"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell",
#  "price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,
#  "timestamp":"2023-09-25T07:49:37.708706Z"}]}
# `side` is the taker's side. One ack per symbol:
# {"method":"subscribe","result":{"channel":"trade","snapshot":true,"symbol":"BTC/USD"},
#  "success":true,"time_in":"...","time_out":"..."}
# {"error":"Currency pair not supported XBT/USD","method":"subscribe","success":false,
#  "symbol":"XBT/USD","time_in":"...","time_out":"..."}
# Heartbeat (about once a second): {"channel":"heartbeat"}
def parse_frame(frame: str | bytes, ingest_time_us: int) -> ParseResult:
    try:
        message = fields.mapping(loads_exact(frame), "frame")
        if "method" in message:
            return _response(message)
        channel = fields.required(message, "channel")
        if channel == "trade":
            return _trades(message, ingest_time_us)
        if channel == "heartbeat":
            return ParseResult.event(EventKind.HEARTBEAT)
        return ParseResult.event(EventKind.INFO, f"channel {fields.shown(channel)}")
    except FrameRejected as exc:
        return ParseResult.rejected(exc)


def _response(message: Mapping[str, Any]) -> ParseResult:
    if message.get("success") is False or message.get("method") == "error":
        symbol = message.get("symbol")
        raw_symbols = (symbol,) if isinstance(symbol, str) else ()
        return ParseResult.event(EventKind.ERROR, str(message.get("error"))[:200], raw_symbols)
    if message.get("method") == "subscribe":
        return ParseResult.event(EventKind.ACK)
    return ParseResult.event(EventKind.INFO, f"method {fields.shown(message.get('method'))}")


def _trades(message: Mapping[str, Any], ingest_time_us: int) -> ParseResult:
    trades: list[Trade] = []
    rejections: list[Rejection] = []
    for item in fields.sequence(fields.required(message, "data"), "data"):
        try:
            trades.append(_trade(fields.mapping(item, "trade"), ingest_time_us))
        except FrameRejected as exc:
            rejections.append(Rejection(exc.reason, exc.detail))
    # Sequential-id dedupe needs each symbol's trades in id order, whatever a snapshot's order.
    trades.sort(key=lambda trade: (trade.symbol, int(trade.trade_id)))
    return ParseResult(trades=tuple(trades), rejections=tuple(rejections))


def _trade(item: Mapping[str, Any], ingest_time_us: int) -> Trade:
    _, symbol = fields.raw_symbol(fields.required(item, "symbol"))
    raw_id = fields.required(item, "trade_id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, int):
        raise FrameRejected(
            RejectReason.INVALID_TRADE_ID, f"{fields.shown(raw_id)} is not an integer"
        )
    return fields.build_trade(
        exchange=EXCHANGE,
        symbol=symbol,
        trade_id=fields.trade_id(raw_id),
        price=fields.exact_decimal(fields.required(item, "price"), RejectReason.INVALID_PRICE),
        quantity=fields.exact_decimal(fields.required(item, "qty"), RejectReason.INVALID_QUANTITY),
        side=fields.side(fields.required(item, "side"), _TAKER_SIDE),
        exchange_time_us=fields.plausible_time_us(
            fields.rfc3339_to_us(fields.required(item, "timestamp")), ingest_time_us
        ),
        ingest_time_us=ingest_time_us,
    )


VENUE = Venue(
    name=EXCHANGE,
    default_url=DEFAULT_URL,
    plan_connections=plan_connections,
    parse_frame=parse_frame,
    sequential_ids=True,  # "trade_id: a sequence number, unique per book"
    heartbeats=True,
)


# kraken_source(raw_symbols, url, idle_timeout_s): trades of Kraken pairs (`BTC/USD`).
kraken_source = functools.partial(exchange_source, VENUE)
