"""Local fake exchanges that speak the Binance, Coinbase and Kraken WebSocket protocols.

A `FakeExchange` listens on 127.0.0.1 (a free port) and, per connection, performs the venue's
handshake (Binance: streams in the URL; Coinbase: subscribe + `subscriptions` ack + snapshot +
heartbeats; Kraken: status + per-symbol acks + snapshot of the last 50 trades + heartbeats),
then runs a script: a coroutine that drives a `Session` (send trades, replay old ones, send
garbage, drop the connection, go silent). Frames are shaped exactly like the venues' documented
examples. `history` is every trade that happened on the fake exchange, in order.

In a test's event loop:  `async with FakeExchange("kraken", ["BTC/USD"]) as fake: fake.url`
From another thread/process (e.g. `tickpipe run` in a subprocess):
    `with run_in_thread(FakeExchange("binance", ["BTCUSDT"], scripts=[stream(100, 0.01)])) as fake:`
and point `TICKPIPE_EXCHANGE_URL` at `fake.url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tickpipe.core.symbols import normalize_symbol
from tickpipe.core.trade import Side, Trade, format_time_us

VENUES = ("binance", "coinbase", "kraken")
KRAKEN_SNAPSHOT_SIZE = 50
COINBASE_SNAPSHOT_SIZE = 10

# Cycled through per trade. Kraken's are JSON number texts, the others' JSON string contents;
# they include the awkward ones (trailing zeros, tiny values, exponents).
PRICES: Mapping[str, Sequence[str]] = {
    "binance": ("65000.10000000", "64999.99", "0.00000001", "65001"),
    "coinbase": ("1260.01", "65000.10", "0.000001", "42"),
    "kraken": ("65000.10", "0.1", "1e-8", "0.5117"),
}
QUANTITIES: Mapping[str, Sequence[str]] = {
    "binance": ("0.00100000", "1.5", "100", "0.1"),
    "coinbase": ("0.3", "0.00000001", "12.5", "1"),
    "kraken": ("40.0", "0.00012345", "1E-8", "3"),
}


@dataclass(frozen=True, slots=True)
class FakeTrade:
    """One trade of the fake exchange, with the exact texts it was sent with."""

    exchange: str
    raw_symbol: str
    trade_id: int
    price_text: str
    quantity_text: str
    side: Side
    exchange_time_us: int

    @property
    def symbol(self) -> str:
        return normalize_symbol(self.raw_symbol)

    def key(self) -> tuple[str, str, str, str, str, Side, int]:
        """Comparable with `trade_key` of the Trade the source should yield for it."""
        return (
            self.exchange,
            self.symbol,
            str(self.trade_id),
            str(Decimal(self.price_text)),
            str(Decimal(self.quantity_text)),
            self.side,
            self.exchange_time_us,
        )


def trade_key(trade: Trade) -> tuple[str, str, str, str, str, Side | None, int]:
    """Exact comparison key: str(Decimal) keeps trailing zeros and exponents apart."""
    return (
        trade.exchange,
        trade.symbol,
        trade.trade_id,
        str(trade.price),
        str(trade.quantity),
        trade.side,
        trade.exchange_time_us,
    )


Script = Callable[["Session"], Awaitable[None]]


class _SessionOver(Exception):
    """Ends a session's script (the fake dropped or is leaving the connection)."""


class Session:
    """One client connection, as a script sees it."""

    def __init__(self, fake: FakeExchange, ws: ServerConnection, raw_symbols: Sequence[str]):
        self.fake = fake
        self.ws = ws
        self.raw_symbols = tuple(raw_symbols)
        self.heartbeats: asyncio.Task[None] | None = None
        self._sequence = itertools.count(1)
        self._next_symbol = itertools.cycle(self.raw_symbols)

    async def send_trades(
        self, count: int, interval_s: float = 0.0, raw_symbol: str | None = None
    ) -> list[FakeTrade]:
        """New trades, round-robin over the subscribed symbols unless one is named."""
        sent = []
        for _ in range(count):
            trade = self.fake.new_trade(raw_symbol or next(self._next_symbol))
            await self.send_raw(self.fake.trade_frame([trade], next(self._sequence)))
            sent.append(trade)
            if interval_s:
                await asyncio.sleep(interval_s)
        return sent

    def miss_trades(self, count: int) -> list[FakeTrade]:
        """Trades that happen on the exchange but are not sent on this connection."""
        return [self.fake.new_trade(next(self._next_symbol)) for _ in range(count)]

    async def replay(self, count: int) -> None:
        """Sends the last `count` trades of the subscribed symbols again (duplicates)."""
        mine = [t for t in self.fake.history if t.raw_symbol in self.raw_symbols]
        for trade in mine[-count:]:
            await self.send_raw(self.fake.trade_frame([trade], next(self._sequence)))

    async def send_bad_trade(self, **overrides: str | None) -> None:
        """A trade frame with fields replaced by raw JSON texts (None removes the field)."""
        trade = self.fake.new_trade(next(self._next_symbol), record=False)
        await self.send_raw(self.fake.trade_frame([trade], next(self._sequence), overrides))

    async def send_raw(self, frame: str | bytes) -> None:
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            raise _SessionOver from None

    async def server_shutdown(self) -> None:
        """Binance's notice that the server is about to close the connection."""
        event = {"e": "serverShutdown", "E": time.time_ns() // 1_000_000}
        await self.send_raw(json.dumps({"stream": "!serverShutdown", "data": event}))

    async def drop(self) -> None:
        """Cuts the TCP connection without a closing handshake."""
        self.ws.transport.abort()
        raise _SessionOver

    async def go_silent(self, answer_pings: bool = True) -> None:
        """Stops all data and heartbeats; with answer_pings=False, stops reading too."""
        if self.heartbeats is not None:
            self.heartbeats.cancel()
        if not answer_pings:
            self.ws.transport.pause_reading()
        await self.fake.stopping.wait()
        raise _SessionOver

    async def hold(self) -> None:
        """Keeps the connection open (heartbeats go on) until the client leaves."""
        closed = asyncio.ensure_future(self.ws.wait_closed())
        stopping = asyncio.ensure_future(self.fake.stopping.wait())
        try:
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            stopping.cancel()


def stream(count: int, interval_s: float = 0.0) -> Script:
    """Script: `count` trades, then hold the connection."""

    async def script(session: Session) -> None:
        await session.send_trades(count, interval_s)

    return script


@dataclass
class FakeExchange:
    venue: str
    raw_symbols: Sequence[str]
    scripts: Sequence[Script] = (stream(5),)  # connection n runs scripts[min(n, len - 1)]
    unknown_symbols: frozenset[str] = frozenset()
    # Coinbase/Kraken: answer the first subscribe message with this frame instead of an ack.
    subscribe_reply: str | None = None
    heartbeat_interval_s: float = 0.05
    # Price texts cycled through instead of the venue's awkward ones (e.g. a realistic market).
    prices: Sequence[str] = ()
    history: list[FakeTrade] = field(default_factory=list)
    connections: int = 0
    subscriptions: list[tuple[str, ...]] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        if self.venue not in VENUES:
            raise ValueError(f"unknown venue {self.venue!r}")
        self._ids = {raw: 1_000 + 1_000 * n for n, raw in enumerate(self.raw_symbols)}
        self._counter = itertools.count()
        self._server: Server | None = None
        self.stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Listens on 127.0.0.1 (a free port unless one is given, e.g. to come back after stop)."""
        self.stopping = asyncio.Event()
        self._server = await serve(self._handle, "127.0.0.1", port, close_timeout=0.2)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            for connection in list(self._server.connections):
                connection.transport.abort()
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> FakeExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- trades --------------------------------------------------------------------------------

    def new_trade(self, raw_symbol: str, record: bool = True) -> FakeTrade:
        n = next(self._counter)
        trade_id = self._ids[raw_symbol]
        if record:
            self._ids[raw_symbol] += 1
        now_us = time.time_ns() // 1000
        if self.venue == "binance":
            now_us -= now_us % 1000  # Binance times are milliseconds
        trade = FakeTrade(
            exchange=self.venue,
            raw_symbol=raw_symbol,
            trade_id=trade_id,
            price_text=self.prices[n % len(self.prices)]
            if self.prices
            else PRICES[self.venue][n % 4],
            quantity_text=QUANTITIES[self.venue][n % 4],
            side=Side.BUY if n % 3 else Side.SELL,
            exchange_time_us=now_us,
        )
        if record:
            self.history.append(trade)
        return trade

    def trade_frame(
        self,
        trades: Sequence[FakeTrade],
        sequence: int,
        overrides: Mapping[str, str | None] | None = None,
        kind: str = "update",
    ) -> str:
        items = [_object(_trade_fields(self.venue, t), overrides or {}) for t in trades]
        if self.venue == "binance":
            (item,) = items
            return f'{{"stream":"{trades[0].raw_symbol.lower()}@trade","data":{item}}}'
        if self.venue == "coinbase":
            stamp = format_time_us(time.time_ns() // 1000)
            return (
                f'{{"channel":"market_trades","client_id":"","timestamp":"{stamp}",'
                f'"sequence_num":{sequence},"events":[{{"type":"{kind}",'
                f'"trades":[{",".join(items)}]}}]}}'
            )
        return f'{{"channel":"trade","type":"{kind}","data":[{",".join(items)}]}}'

    # -- protocol ------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        session: Session | None = None
        try:
            raw_symbols = await _HANDSHAKES[self.venue](self, ws)
            if raw_symbols is None:  # refused: keep the socket as the venue would
                await Session(self, ws, ()).hold()
                return
            self.subscriptions.append(tuple(raw_symbols))
            session = Session(self, ws, raw_symbols)
            if self.venue != "binance":
                session.heartbeats = asyncio.create_task(self._heartbeats(session))
            await self.scripts[min(index, len(self.scripts) - 1)](session)
            await session.hold()
        except (_SessionOver, ConnectionClosed):
            pass
        finally:
            if session is not None and session.heartbeats is not None:
                session.heartbeats.cancel()

    async def _heartbeats(self, session: Session) -> None:
        counter = itertools.count(1)
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            if self.venue == "kraken":
                frame = '{"channel":"heartbeat"}'
            else:
                frame = json.dumps(
                    {
                        "channel": "heartbeats",
                        "client_id": "",
                        "timestamp": format_time_us(time.time_ns() // 1000),
                        "sequence_num": 0,
                        "events": [
                            {
                                "current_time": "2023-06-23 20:31:56.121961769 +0000 UTC",
                                "heartbeat_counter": str(next(counter)),
                            }
                        ],
                    }
                )
            try:
                await session.ws.send(frame)
            except ConnectionClosed:
                return

    async def _recv_json(self, ws: ServerConnection) -> Any:
        message = await asyncio.wait_for(ws.recv(), 5)
        self.received.append(message if isinstance(message, str) else message.decode())
        return json.loads(message)


async def _binance_handshake(fake: FakeExchange, ws: ServerConnection) -> list[str] | None:
    request = ws.request
    assert request is not None
    parts = urlsplit(request.path)
    assert parts.path == "/stream", parts.path
    streams = parse_qs(parts.query)["streams"][0].split("/")
    by_stream = {f"{raw.lower()}@trade": raw for raw in fake.raw_symbols}
    # Binance accepts unknown streams and then stays silent about them.
    return [by_stream[name] for name in streams if name in by_stream]


async def _coinbase_handshake(fake: FakeExchange, ws: ServerConnection) -> list[str] | None:
    channels: dict[str, list[str]] = {}
    while len(channels) < 2:
        message = await fake._recv_json(ws)
        assert message["type"] == "subscribe", message
        if fake.subscribe_reply is not None:
            await ws.send(fake.subscribe_reply)
            return None
        products = message["product_ids"]
        unknown = [p for p in products if p in fake.unknown_symbols]
        if unknown:
            error = {
                "type": "error",
                "message": "Failed to subscribe",
                "reason": f"{unknown[0]} is not a valid product",
            }
            await ws.send(json.dumps(error))
            return None
        channels[message["channel"]] = products
        ack = {
            "channel": "subscriptions",
            "client_id": "",
            "timestamp": format_time_us(time.time_ns() // 1000),
            "sequence_num": 0,
            "events": [{"subscriptions": dict(channels)}],
        }
        await ws.send(json.dumps(ack))
    products = channels["market_trades"]
    recent = [t for t in fake.history if t.raw_symbol in products][-COINBASE_SNAPSHOT_SIZE:]
    if recent:  # newest first, as Coinbase sends it
        await ws.send(fake.trade_frame(recent[::-1], 0, kind="snapshot"))
    return products


async def _kraken_handshake(fake: FakeExchange, ws: ServerConnection) -> list[str] | None:
    status = {
        "channel": "status",
        "type": "update",
        "data": [{"version": "2.0.0", "system": "online", "api_version": "v2", "connection_id": 1}],
    }
    await ws.send(json.dumps(status))
    message = await fake._recv_json(ws)
    assert message["method"] == "subscribe", message
    assert message["params"]["channel"] == "trade", message
    if fake.subscribe_reply is not None:
        await ws.send(fake.subscribe_reply)
        return None
    pairs: list[str] = message["params"]["symbol"]
    snapshot = message["params"].get("snapshot", True)
    stamp = format_time_us(time.time_ns() // 1000)
    refused = False
    for pair in pairs:
        if pair in fake.unknown_symbols:
            refused = True
            answer: dict[str, Any] = {
                "error": f"Currency pair not supported {pair}",
                "method": "subscribe",
                "success": False,
                "symbol": pair,
            }
        else:
            answer = {
                "method": "subscribe",
                "result": {"channel": "trade", "snapshot": snapshot, "symbol": pair},
                "success": True,
            }
        answer |= {"time_in": stamp, "time_out": stamp, "req_id": message.get("req_id")}
        await ws.send(json.dumps(answer))
    if refused:
        return None
    for pair in pairs:
        recent = [t for t in fake.history if t.raw_symbol == pair][-KRAKEN_SNAPSHOT_SIZE:]
        if snapshot:
            await ws.send(fake.trade_frame(recent, 0, kind="snapshot"))
    return pairs


_HANDSHAKES: Mapping[
    str, Callable[[FakeExchange, ServerConnection], Awaitable[list[str] | None]]
] = {
    "binance": _binance_handshake,
    "coinbase": _coinbase_handshake,
    "kraken": _kraken_handshake,
}


def _trade_fields(venue: str, trade: FakeTrade) -> list[tuple[str, str]]:
    """(key, raw JSON value text) pairs, in the documented order."""
    if venue == "binance":
        ms = str(trade.exchange_time_us // 1000)
        return [
            ("e", '"trade"'),
            ("E", ms),
            ("s", f'"{trade.raw_symbol}"'),
            ("t", str(trade.trade_id)),
            ("p", f'"{trade.price_text}"'),
            ("q", f'"{trade.quantity_text}"'),
            ("T", ms),
            ("m", "true" if trade.side is Side.SELL else "false"),
            ("M", "true"),
        ]
    stamp = f'"{format_time_us(trade.exchange_time_us)}"'
    if venue == "coinbase":
        return [
            ("trade_id", f'"{trade.trade_id}"'),
            ("product_id", f'"{trade.raw_symbol}"'),
            ("price", f'"{trade.price_text}"'),
            ("size", f'"{trade.quantity_text}"'),
            ("side", f'"{trade.side.upper()}"'),
            ("time", stamp),
        ]
    return [
        ("symbol", f'"{trade.raw_symbol}"'),
        ("side", f'"{trade.side}"'),
        ("price", trade.price_text),
        ("qty", trade.quantity_text),
        ("ord_type", '"market"'),
        ("trade_id", str(trade.trade_id)),
        ("timestamp", stamp),
    ]


def _object(pairs: list[tuple[str, str]], overrides: Mapping[str, str | None]) -> str:
    merged = dict(pairs) | dict(overrides)
    return "{" + ",".join(f'"{k}":{v}' for k, v in merged.items() if v is not None) + "}"


@contextlib.contextmanager
def run_in_thread(fake: FakeExchange) -> Iterator[FakeExchange]:
    """Runs the fake in its own event loop thread; `fake.url` is set on entry."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve_forever() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve_forever, name=f"fake-{fake.venue}", daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
