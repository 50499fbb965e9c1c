"""The JSON of live updates and snapshots, serialized once in the processor.

A pub/sub message carries many updates: one line per trade, `SYMBOL<space>JSON`, so the gateway
can route each frame by symbol without parsing it and send the JSON bytes to clients as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import overload

import orjson

from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.views import snapshot_view, update_view
from tickpipe.ports import Frame, JsonObject


def update_frame(scored: ScoredTrade) -> bytes:
    """The WebSocket frame of one processed trade (contract: WS /ws)."""
    return orjson.dumps(update_view(scored))


def encode_updates(batch: Sequence[ScoredTrade]) -> bytes:
    dumps = orjson.dumps
    prefixes: dict[str, bytes] = {}  # `SYMBOL ` once per symbol of the batch
    lines = []
    for scored in batch:
        symbol = scored.trade.symbol
        prefix = prefixes.get(symbol)
        if prefix is None:
            prefix = prefixes[symbol] = symbol.encode() + b" "
        lines.append(prefix + dumps(update_view(scored)))
    return b"\n".join(lines)


class BatchFrames(Sequence[Frame]):
    """The frames of one batch, serialized at first use, once for every reader: in-process,
    with no WebSocket client connected, the gateway never looks inside and nothing is encoded."""

    __slots__ = ("_batch", "_frames")

    def __init__(self, batch: Sequence[ScoredTrade]) -> None:
        self._batch = batch
        self._frames: list[Frame] | None = None

    def __len__(self) -> int:
        return len(self._batch)

    @overload
    def __getitem__(self, index: int) -> Frame: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Frame]: ...
    def __getitem__(self, index: int | slice) -> Frame | Sequence[Frame]:
        frames = self._frames
        if frames is None:
            dumps = orjson.dumps
            frames = self._frames = [
                Frame(scored.trade.symbol, dumps(update_view(scored))) for scored in self._batch
            ]
        return frames[index]


def decode_updates(message: bytes) -> list[Frame]:
    """Inverse of encode_updates; lines without a symbol prefix are skipped."""
    frames = []
    for line in message.split(b"\n"):
        symbol, sep, data = line.partition(b" ")
        if sep and data:
            frames.append(Frame(symbol.decode(), data))
    return frames


def latest_snapshots(batch: Iterable[ScoredTrade], window: int) -> dict[str, bytes]:
    """`exchange:symbol` -> snapshot JSON, the last trade of each stream in the batch."""
    latest: dict[str, ScoredTrade] = {}
    for scored in batch:
        latest[f"{scored.trade.exchange}:{scored.trade.symbol}"] = scored
    return {key: orjson.dumps(snapshot_view(s, window)) for key, s in latest.items()}


def pick_snapshot(
    snapshots: Iterable[JsonObject], symbol: str, exchange: str | None
) -> JsonObject | None:
    """The newest snapshot of `symbol` (on `exchange` when named)."""
    best: JsonObject | None = None
    for snap in snapshots:
        if snap["symbol"] != symbol or (exchange is not None and snap["exchange"] != exchange):
            continue
        if best is None or snap["timestamp"] > best["timestamp"]:
            best = snap
    return best
