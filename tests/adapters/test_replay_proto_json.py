"""`tickpipe replay` reads protobuf's canonical JSON mapping of tickpipe.v1.Trade, as written by
`google.protobuf.json_format`: lowerCamelCase or original names, enum names or numbers, int64 as
strings or numbers; the trades are the same as from tickpipe's own JSON lines."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from google.protobuf import json_format

from tickpipe.adapters.bus._generated import trade_pb2
from tickpipe.adapters.replay_files import TradeFile, parse_json_line
from tickpipe.core.trade import InvalidTrade, Side, Trade

NOW_US = 1_800_000_000_000_000


def message(n: int, side: int) -> trade_pb2.Trade:
    return trade_pb2.Trade(
        exchange="coinbase",
        symbol="BTCUSD",
        trade_id=str(100 + n),
        price=f"65000.{n}0",
        quantity="0.00100000",
        side=side,
        exchange_time_us=1_714_564_800_000_000 + n,
        ingest_time_us=1_714_564_800_000_500 + n if n % 2 else 0,
    )


@pytest.mark.parametrize("original_names", [False, True])
def test_a_json_format_file_replays_with_exact_trades(tmp_path: Path, original_names: bool) -> None:
    """MessageToJson lines (either naming) give the messages' trades, digit for digit."""
    sides = [trade_pb2.SIDE_BUY, trade_pb2.SIDE_SELL, trade_pb2.SIDE_UNSPECIFIED]
    messages = [message(n, sides[n % 3]) for n in range(6)]
    path = tmp_path / "trades.jsonl"
    path.write_text(
        "".join(
            json_format.MessageToJson(m, indent=None, preserving_proto_field_name=original_names)
            + "\n"
            for m in messages
        )
    )
    trades = list(TradeFile(path, now_us=lambda: NOW_US))
    assert all(isinstance(t, Trade) for t in trades), trades
    expected = [
        (
            m.trade_id,
            str(Decimal(m.price)),
            m.quantity,
            [Side.BUY, Side.SELL, None][n % 3],
            m.exchange_time_us,
            m.ingest_time_us or NOW_US,  # unset (0): the time of replay, as for tickpipe's JSON
        )
        for n, m in enumerate(messages)
    ]
    got = [
        (t.trade_id, str(t.price), str(t.quantity), t.side, t.exchange_time_us, t.ingest_time_us)
        for t in trades
        if isinstance(t, Trade)
    ]
    assert got == expected


def test_enum_numbers_and_int64_numbers_are_read_too() -> None:
    """Side 1 and a bare int64 number, as json_format.Parse also accepts them."""
    trade = parse_json_line(
        '{"exchange":"kraken","symbol":"BTCUSD","tradeId":"7","price":"1.5","quantity":"2",'
        '"side":1,"exchangeTimeUs":1714564800000000,"ingestTimeUs":"1714564800000001"}',
        NOW_US,
    )
    assert (trade.side, trade.exchange_time_us, trade.ingest_time_us) == (
        Side.BUY,
        1_714_564_800_000_000,
        1_714_564_800_000_001,
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ('"tradeId":"1","trade_id":"1"', "both 'tradeId' and 'trade_id'"),
        ('"tradeId":"1","side":"SIDE_SIDEWAYS"', "SIDE_SIDEWAYS"),
        ('"tradeId":"1","side":true', "side True"),
        ('"tradeId":"1","side":[1]', "side [1]"),
    ],
)
def test_bad_proto_json_is_one_clear_reason(fields: str, reason: str) -> None:
    """Conflicting names and unknown sides are refused with a reason, never a crash."""
    line = (
        '{"exchange":"kraken","symbol":"BTCUSD","price":"1","quantity":"1",'
        f'"exchangeTimeUs":"1714564800000000",{fields}}}'
    )
    with pytest.raises(InvalidTrade, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_json_line(line, NOW_US)
