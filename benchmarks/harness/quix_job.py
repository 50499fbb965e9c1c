"""The peer: tickpipe's SMA-20 job written with Quix Streams, one result per trade.

    benchmarks/.venv-peer/bin/python -m benchmarks.harness.quix_job BOOTSTRAP IN OUT GROUP STATE_DIR

Runs in its own venv (quixstreams pins an older confluent-kafka) until SIGTERM. Decodes each
`tickpipe.v1.Trade` with tickpipe's generated Protobuf module, keeps a per-symbol deque of the
last 20 prices in `.apply`, and writes {symbol, trade_id, price, sma, signal} as JSON to OUT.
"""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from quixstreams import Application

from tickpipe.adapters.bus._generated.trade_pb2 import Trade

WINDOW = 20


def sma_job() -> Any:
    """The `.apply` function: a deque per symbol, mean of the last WINDOW prices."""
    windows: dict[str, deque[float]] = {}

    def score(value: bytes) -> dict[str, Any]:
        trade = Trade.FromString(value)
        price = float(trade.price)
        window = windows.get(trade.symbol)
        if window is None:
            window = windows[trade.symbol] = deque(maxlen=WINDOW)
        window.append(price)
        sma = sum(window) / WINDOW if len(window) == WINDOW else None
        signal = "HOLD" if sma is None or price == sma else ("BUY" if price > sma else "SELL")
        return {
            "symbol": trade.symbol,
            "trade_id": trade.trade_id,
            "price": price,
            "sma": sma,
            "signal": signal,
        }

    return score


def main() -> None:
    bootstrap, input_topic, output_topic, group, state_dir = sys.argv[1:6]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        consumer_extra_config={"fetch.queue.backoff.ms": 0, "session.timeout.ms": 6000},
        state_dir=state_dir,
        use_changelog_topics=False,
        auto_create_topics=False,
        loglevel="WARNING",
    )
    source = app.topic(input_topic, value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(output_topic, value_serializer="json", key_serializer="bytes")
    app.dataframe(source).apply(sma_job()).to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
