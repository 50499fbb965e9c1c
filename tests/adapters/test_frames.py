"""Live-update frames and snapshots: the WebSocket JSON, pub/sub batching, latest state."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.strategies import trades
from fixtures.trades import make_trade
from tickpipe.adapters.pubsub.frames import (
    BatchFrames,
    decode_updates,
    encode_updates,
    latest_snapshots,
    pick_snapshot,
    update_frame,
)
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal
from tickpipe.core.trade import Trade
from tickpipe.core.views import snapshot_view
from tickpipe.ports import Frame

# Contract, WS /ws: one JSON text frame per processed trade.
WS_FIELDS = {
    "type",
    "exchange",
    "symbol",
    "trade_id",
    "price",
    "quantity",
    "sma",
    "signal",
    "timestamp",
}
DOCUMENTED_EXTRA_WS_FIELDS = {"ingest_time_us"}
# Contract, GET /api/v1/snapshot/{symbol}.
SNAPSHOT_FIELDS = {
    "exchange",
    "symbol",
    "trade_id",
    "price",
    "sma",
    "window",
    "signal",
    "timestamp",
}

signals = st.sampled_from(list(Signal))
smas = st.one_of(st.none(), st.decimals(min_value=Decimal("1e-8"), max_value=Decimal(10**9)))


@st.composite
def scored_trades(draw: st.DrawFn) -> ScoredTrade:
    return ScoredTrade(draw(trades()), draw(smas), draw(signals))


@st.composite
def stream_batches(draw: st.DrawFn) -> list[ScoredTrade]:
    """Batches over a few streams (repeated keys), each trade with increasing time."""
    keys = [("binance", "BTCUSDT"), ("kraken", "BTCUSD"), ("simulated", "BTCUSDT")]
    size = draw(st.integers(0, 12))
    batch = []
    for n in range(1, size + 1):
        exchange, symbol = draw(st.sampled_from(keys))
        batch.append(
            ScoredTrade(make_trade(n, exchange=exchange, symbol=symbol), draw(smas), draw(signals))
        )
    return batch


def scored(
    trade: Trade | None = None, sma: str | None = "65000.05", signal: Signal = Signal.BUY
) -> ScoredTrade:
    return ScoredTrade(trade or make_trade(7), None if sma is None else Decimal(sma), signal)


def test_update_frame_has_exactly_the_contract_fields() -> None:
    """The WS frame carries the contract's fields, plus only the documented ingest_time_us."""
    frame = orjson.loads(update_frame(scored()))
    assert set(frame) - DOCUMENTED_EXTRA_WS_FIELDS == WS_FIELDS
    assert set(frame) <= WS_FIELDS | DOCUMENTED_EXTRA_WS_FIELDS


def test_update_frame_values_and_json_types() -> None:
    """Prices are JSON numbers, the timestamp is the exchange time in ms, the signal a string."""
    trade = make_trade(7, price="65000.10", quantity="0.00100000")
    frame = orjson.loads(update_frame(scored(trade)))
    assert {k: v for k, v in frame.items() if k in WS_FIELDS} == {
        "type": "trade",
        "exchange": "simulated",
        "symbol": "BTCUSDT",
        "trade_id": "7",
        "price": 65000.10,
        "quantity": 0.001,
        "sma": 65000.05,
        "signal": "BUY",
        "timestamp": trade.exchange_time_us // 1000,
    }
    assert isinstance(frame["timestamp"], int)
    assert frame["ingest_time_us"] == trade.ingest_time_us


def test_update_frame_sma_is_null_until_known() -> None:
    """A trade without an SMA yet has `"sma": null` (and HOLD)."""
    frame = orjson.loads(update_frame(scored(sma=None, signal=Signal.HOLD)))
    assert frame["sma"] is None
    assert frame["signal"] == "HOLD"


@given(scored_trades())
def test_update_frame_of_any_trade_matches_the_contract(item: ScoredTrade) -> None:
    """For any valid trade: contract keys, numbers for amounts, ms timestamp, valid signal."""
    frame = orjson.loads(update_frame(item))
    assert set(frame) == WS_FIELDS | DOCUMENTED_EXTRA_WS_FIELDS
    assert frame["price"] == float(item.trade.price)
    assert frame["quantity"] == float(item.trade.quantity)
    assert frame["sma"] == (None if item.sma is None else float(item.sma))
    assert frame["timestamp"] == item.trade.exchange_time_us // 1000
    assert frame["signal"] in {"BUY", "SELL", "HOLD"}
    assert frame["trade_id"] == item.trade.trade_id


@given(st.lists(scored_trades(), max_size=10))
def test_encode_decode_updates_round_trip(batch: list[ScoredTrade]) -> None:
    """decode_updates(encode_updates(b)) gives one frame per trade, in order, bytes unchanged."""
    assert decode_updates(encode_updates(batch)) == [
        Frame(item.trade.symbol, update_frame(item)) for item in batch
    ]


@given(st.lists(scored_trades(), max_size=10))
def test_batch_frames_are_the_frames_redis_carries(batch: list[ScoredTrade]) -> None:
    """The in-process frames of a batch are, frame for frame, what Redis subscribers decode."""
    frames = BatchFrames(batch)
    assert len(frames) == len(batch)
    assert list(frames) == decode_updates(encode_updates(batch))
    assert frames[-2:] == decode_updates(encode_updates(batch))[-2:]


def test_batch_frames_serialize_once_and_only_when_read() -> None:
    """Counting the frames serializes nothing; reading them serializes each trade once."""
    batch = [scored(make_trade(n)) for n in range(3)]
    frames = BatchFrames(batch)
    assert len(frames) == 3
    assert frames._frames is None
    first = frames[0]
    assert frames[0] is first
    assert frames[2].data == update_frame(batch[2])


def test_decode_updates_skips_lines_without_a_symbol_prefix() -> None:
    """Blank lines, lines without a space, and empty payloads are dropped, not errors."""
    assert decode_updates(b"") == []
    assert decode_updates(b'\nnospace\nBTCUSDT \nETHUSDT {"a":1}\n') == [
        Frame("ETHUSDT", b'{"a":1}')
    ]


def test_snapshot_has_exactly_the_contract_fields() -> None:
    """snapshot_view gives the GET /api/v1/snapshot fields with the window size."""
    trade = make_trade(3, price="65000.10")
    assert snapshot_view(scored(trade), 20) == {
        "exchange": "simulated",
        "symbol": "BTCUSDT",
        "trade_id": "3",
        "price": 65000.10,
        "sma": 65000.05,
        "window": 20,
        "signal": "BUY",
        "timestamp": trade.exchange_time_us // 1000,
    }
    assert set(snapshot_view(scored(sma=None), 20)) == SNAPSHOT_FIELDS


@given(stream_batches(), st.integers(1, 50))
def test_latest_snapshots_keeps_the_last_trade_per_stream(
    batch: list[ScoredTrade], window: int
) -> None:
    """One snapshot per `exchange:symbol`, of the last trade of that stream in the batch."""
    expected: dict[str, dict[str, Any]] = {}
    for item in reversed(batch):
        expected.setdefault(
            f"{item.trade.exchange}:{item.trade.symbol}", snapshot_view(item, window)
        )
    snapshots = latest_snapshots(batch, window)
    assert {key: orjson.loads(value) for key, value in snapshots.items()} == expected


def snap(exchange: str, symbol: str, timestamp: int) -> dict[str, Any]:
    return {"exchange": exchange, "symbol": symbol, "timestamp": timestamp}


def test_pick_snapshot_takes_the_newest_over_exchanges() -> None:
    """Without an exchange, the newest snapshot of the symbol wins."""
    snaps = [
        snap("binance", "BTCUSDT", 5),
        snap("simulated", "BTCUSDT", 9),
        snap("kraken", "X", 99),
    ]
    assert pick_snapshot(snaps, "BTCUSDT", None) == snaps[1]


def test_pick_snapshot_filters_by_exchange() -> None:
    """A named exchange restricts the choice to that exchange."""
    snaps = [snap("binance", "BTCUSDT", 5), snap("simulated", "BTCUSDT", 9)]
    assert pick_snapshot(snaps, "BTCUSDT", "binance") == snaps[0]


@pytest.mark.parametrize(("symbol", "exchange"), [("ETHUSDT", None), ("BTCUSDT", "coinbase")])
def test_pick_snapshot_is_none_when_nothing_matches(symbol: str, exchange: str | None) -> None:
    """An unknown symbol (or one not on the named exchange) has no snapshot."""
    assert pick_snapshot([snap("binance", "BTCUSDT", 5)], symbol, exchange) is None
    assert pick_snapshot([], symbol, exchange) is None


@given(
    st.lists(
        st.builds(
            snap,
            st.sampled_from(["binance", "kraken"]),
            st.sampled_from(["BTCUSDT", "ETHUSDT"]),
            st.integers(0, 5),
        ),
        max_size=10,
    ),
    st.sampled_from(["BTCUSDT", "ETHUSDT"]),
    st.sampled_from([None, "binance", "kraken"]),
)
def test_pick_snapshot_equals_naive_reference(
    snaps: list[dict[str, Any]], symbol: str, exchange: str | None
) -> None:
    """pick_snapshot is the first snapshot with the greatest timestamp among the matching ones."""
    matching = [s for s in snaps if s["symbol"] == symbol and exchange in (None, s["exchange"])]
    expected = max(matching, key=lambda s: s["timestamp"]) if matching else None
    assert pick_snapshot(snaps, symbol, exchange) is expected
