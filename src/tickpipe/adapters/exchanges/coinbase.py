"""Coinbase Advanced Trade: the public `market_trades` channel, plus `heartbeats`.

No authentication is needed for market data. Coinbase closes channels that stay quiet for a
minute or so; the `heartbeats` channel (one message a second) keeps the connection open and is
our sign of life. On every subscription Coinbase first sends a snapshot of recent trades: we keep
it (it may fill a gap left by a reconnect) and drop the trades we already emitted by id.
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

EXCHANGE = "coinbase"
DEFAULT_URL = "wss://advanced-trade-ws.coinbase.com"
DEFAULT_SYMBOLS = ("BTC-USD", "ETH-USD")
TRADE_CHANNEL = "market_trades"
HEARTBEAT_CHANNEL = "heartbeats"

_PRODUCT_ID = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+")
# Advanced Trade documents `side` of a market trade as the taker's side (unlike the older
# Exchange API, whose `side` is the maker's).
_TAKER_SIDE = {"BUY": Side.BUY, "SELL": Side.SELL, "buy": Side.BUY, "sell": Side.SELL}


def product_ids(raw_symbols: Sequence[str]) -> list[str]:
    bad = [raw for raw in raw_symbols if not _PRODUCT_ID.fullmatch(raw)]
    if bad:
        raise SubscriptionRejected(EXCHANGE, bad, "not a Coinbase product id (like BTC-USD)")
    return list(dict.fromkeys(raw.upper() for raw in raw_symbols))


def subscribe_messages(raw_symbols: Sequence[str]) -> list[str]:
    """One subscribe message per channel, as Coinbase requires."""
    products = product_ids(raw_symbols)
    return [
        json.dumps({"type": "subscribe", "product_ids": products, "channel": channel})
        for channel in (TRADE_CHANNEL, HEARTBEAT_CHANNEL)
    ]


def accepted_symbols(raw_symbols: Sequence[str]) -> frozenset[str]:
    """Normalized symbols whose trades may arrive; a `-USDC` product streams as its `-USD` twin."""
    symbols = set()
    for product in product_ids(raw_symbols):
        symbols.add(normalize_symbol(product))
        if product.endswith("-USDC"):
            symbols.add(normalize_symbol(product.removesuffix("C")))
    return frozenset(symbols)


def plan_connections(raw_symbols: Sequence[str], url: str) -> list[ConnectionPlan]:
    return [
        ConnectionPlan(
            url=url,
            subscribe_messages=tuple(subscribe_messages(raw_symbols)),
            raw_symbols=tuple(product_ids(raw_symbols)),
            symbols=accepted_symbols(raw_symbols),
        )
    ]


# Trades (docs.cdp.coinbase.com, Advanced Trade WebSocket channels, "Market Trades Channel"):
# {"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z",
#  "sequence_num":0,"events":[{"type":"snapshot","trades":[{"trade_id":"000000000",
#  "product_id":"ETH-USD","price":"1260.01","size":"0.3","side":"BUY",
#  "time":"2019-08-14T20:42:27.265Z"}]}]}
# Heartbeats: {"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26.122969572Z",
#  "sequence_num":0,"events":[{"current_time":"2023-06-23 20:31:56.121961769 +0000 UTC",
#  "heartbeat_counter":"3049"}]}
# Subscription acks: {"channel":"subscriptions","events":[{"subscriptions":{"market_trades":
#  ["ETH-USD"]}}], ...}; refusals: {"type":"error","message":"Failed to subscribe",...}
def parse_frame(frame: str | bytes, ingest_time_us: int) -> ParseResult:
    try:
        message = fields.mapping(loads_exact(frame), "frame")
        if message.get("type") == "error":
            detail = " ".join(
                str(message[key]) for key in ("message", "reason") if message.get(key)
            )
            return ParseResult.event(EventKind.ERROR, detail[:200] or "error")
        channel = fields.required(message, "channel")
        if channel == TRADE_CHANNEL:
            return _market_trades(message, ingest_time_us)
        if channel == HEARTBEAT_CHANNEL:
            return ParseResult.event(EventKind.HEARTBEAT)
        if channel == "subscriptions":
            return ParseResult.event(EventKind.ACK)
        return ParseResult.event(EventKind.INFO, f"channel {fields.shown(channel)}")
    except FrameRejected as exc:
        return ParseResult.rejected(exc)


def _market_trades(message: Mapping[str, Any], ingest_time_us: int) -> ParseResult:
    trades: list[Trade] = []
    rejections: list[Rejection] = []
    for event in fields.sequence(fields.required(message, "events"), "events"):
        items = fields.sequence(fields.required(fields.mapping(event, "event"), "trades"), "trades")
        for item in items:
            # One bad trade costs only itself, not the other trades of the batch.
            try:
                trades.append(_trade(fields.mapping(item, "trade"), ingest_time_us))
            except FrameRejected as exc:
                rejections.append(Rejection(exc.reason, exc.detail))
    # A message batches ~250 ms of trades, snapshots newest first; emit oldest first.
    trades.sort(key=lambda trade: (trade.exchange_time_us, _id_order(trade.trade_id)))
    return ParseResult(trades=tuple(trades), rejections=tuple(rejections))


def _id_order(trade_id: str) -> tuple[int, str]:
    # Numeric ids compare as numbers ("9" < "10"), anything else as text.
    return (len(trade_id), trade_id) if trade_id.isdigit() else (0, trade_id)


def _trade(item: Mapping[str, Any], ingest_time_us: int) -> Trade:
    _, symbol = fields.raw_symbol(fields.required(item, "product_id"))
    return fields.build_trade(
        exchange=EXCHANGE,
        symbol=symbol,
        trade_id=fields.trade_id(fields.required(item, "trade_id")),
        price=fields.exact_decimal(fields.required(item, "price"), RejectReason.INVALID_PRICE),
        quantity=fields.exact_decimal(fields.required(item, "size"), RejectReason.INVALID_QUANTITY),
        side=fields.side(fields.required(item, "side"), _TAKER_SIDE),
        exchange_time_us=fields.plausible_time_us(
            fields.rfc3339_to_us(fields.required(item, "time")), ingest_time_us
        ),
        ingest_time_us=ingest_time_us,
    )


VENUE = Venue(
    name=EXCHANGE,
    default_url=DEFAULT_URL,
    plan_connections=plan_connections,
    parse_frame=parse_frame,
    sequential_ids=False,  # ids are documented as strings: compare them, don't count them
    heartbeats=True,
)


# coinbase_source(raw_symbols, url, idle_timeout_s): trades of Coinbase products (`BTC-USD`).
coinbase_source = functools.partial(exchange_source, VENUE)
