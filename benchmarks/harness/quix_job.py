"""The peer: tickpipe's processor written with Quix Streams by a performance-minded user, doing
the same work: SMA-20 and signal per (exchange, symbol) in exact decimals, every trade stored in
PostgreSQL idempotently (one sink: binary COPY -> staging -> INSERT ... ON CONFLICT DO NOTHING,
one transaction per checkpoint), then one PUBLISH per checkpoint to Redis (tickpipe's
`SYMBOL JSON` lines) and the latest snapshot per stream; offsets are committed after the sink
has written (Quix's checkpoint: flush sinks, then commit), every 5,000 trades or 50 ms.

    benchmarks/.venv-peer/bin/python -m benchmarks.harness.quix_job \\
        BOOTSTRAP IN GROUP STATE_DIR DATABASE_URL REDIS_URL CHANNEL PREFIX

Runs in its own venv (quixstreams pins an older confluent-kafka) until SIGTERM.
"""

from __future__ import annotations

import sys
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import orjson
import psycopg
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch
from redis import Redis

from tickpipe.adapters.bus._generated.trade_pb2 import Trade

WINDOW = 20
CHECKPOINT_TRADES = 5_000
CHECKPOINT_S = 0.05
_EXACT = Context(prec=100)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SIDES = {0: None, 1: "buy", 2: "sell"}
_CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS peer_staging (
    time timestamptz NOT NULL, exchange text NOT NULL, symbol text NOT NULL,
    trade_id text NOT NULL, price numeric NOT NULL, quantity numeric NOT NULL, side text,
    sma double precision, signal text NOT NULL, ingest_time timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY = (
    "COPY peer_staging (time, exchange, symbol, trade_id, price, quantity, side, sma, signal,"
    " ingest_time) FROM STDIN (FORMAT BINARY)"
)
_TYPES = [
    "timestamptz",
    "text",
    "text",
    "text",
    "numeric",
    "numeric",
    "text",
    "float8",
    "text",
    "timestamptz",
]
_INSERT = """
INSERT INTO trades (time, exchange, symbol, trade_id, price, quantity, side, sma, signal,
                    ingest_time)
SELECT * FROM peer_staging
ON CONFLICT (exchange, symbol, trade_id, time) DO NOTHING
"""


def sma_job() -> Any:
    """The `.apply` function: per stream a deque of the last WINDOW prices and their exact sum."""
    windows: dict[tuple[str, str], tuple[deque[Decimal], list[Decimal]]] = {}

    def score(value: bytes) -> dict[str, Any]:
        trade = Trade.FromString(value)
        price = Decimal(trade.price)
        key = (trade.exchange, trade.symbol)
        state = windows.get(key)
        if state is None:
            state = windows[key] = (deque(maxlen=WINDOW), [Decimal(0)])
        prices, total = state
        if len(prices) == WINDOW:
            total[0] = _EXACT.subtract(total[0], prices[0])
        prices.append(price)
        total[0] = _EXACT.add(total[0], price)
        sma = signal = None
        if len(prices) == WINDOW:
            sma = _EXACT.divide(total[0], WINDOW)
            scaled = _EXACT.multiply(price, WINDOW)
            signal = "BUY" if scaled > total[0] else "SELL" if scaled < total[0] else "HOLD"
        return {
            "exchange": trade.exchange,
            "symbol": trade.symbol,
            "trade_id": trade.trade_id,
            "price": price,
            "quantity": Decimal(trade.quantity),
            "side": _SIDES.get(trade.side),
            "sma": sma,
            "signal": signal or "HOLD",
            "time_us": trade.exchange_time_us,
            "ingest_time_us": trade.ingest_time_us,
        }

    return score


class PostgresRedisSink(BatchingSink):
    """One write per checkpoint for all partitions: COPY -> staging -> ON CONFLICT in one
    transaction, then one pipelined PUBLISH + HSET to Redis."""

    def __init__(self, database_url: str, redis_url: str, channel: str, prefix: str) -> None:
        super().__init__()
        self._database_url = database_url
        self._redis_url = redis_url
        self._channel = channel
        self._snapshots = f"{prefix}snapshots"

    def setup(self) -> None:
        self._connection = psycopg.connect(self._database_url)
        self._connection.execute(_CREATE_STAGING)
        self._connection.commit()
        self._redis = Redis.from_url(self._redis_url)

    def write(self, batch: SinkBatch) -> None:  # not used: flush writes all partitions at once
        raise NotImplementedError

    def flush(self) -> None:
        try:
            scored = [item.value for batch in self._batches.values() for item in batch]
            if scored:
                self._store(scored)
                self._publish(scored)
        finally:
            self._batches.clear()

    def _store(self, scored: list[dict[str, Any]]) -> None:
        with self._connection.cursor() as cursor:
            with cursor.copy(_COPY) as copy:
                copy.set_types(_TYPES)
                for s in scored:
                    copy.write_row(
                        (
                            _EPOCH + timedelta(microseconds=s["time_us"]),
                            s["exchange"],
                            s["symbol"],
                            s["trade_id"],
                            s["price"],
                            s["quantity"],
                            s["side"],
                            None if s["sma"] is None else float(s["sma"]),
                            s["signal"],
                            _EPOCH + timedelta(microseconds=s["ingest_time_us"]),
                        )
                    )
            cursor.execute(_INSERT)
        self._connection.commit()

    def _publish(self, scored: list[dict[str, Any]]) -> None:
        lines = []
        latest = {}
        for s in scored:
            frame = {
                "type": "trade",
                "exchange": s["exchange"],
                "symbol": s["symbol"],
                "trade_id": s["trade_id"],
                "price": float(s["price"]),
                "quantity": float(s["quantity"]),
                "sma": None if s["sma"] is None else float(s["sma"]),
                "signal": s["signal"],
                "timestamp": s["time_us"] // 1000,
                "ingest_time_us": s["ingest_time_us"],
            }
            lines.append(s["symbol"].encode() + b" " + orjson.dumps(frame))
            latest[f"{s['exchange']}:{s['symbol']}"] = frame
        pipe = self._redis.pipeline(transaction=False)
        pipe.publish(self._channel, b"\n".join(lines))
        pipe.hset(self._snapshots, mapping={k: orjson.dumps(v) for k, v in latest.items()})
        pipe.execute()


def main() -> None:
    bootstrap, input_topic, group, state_dir = sys.argv[1:5]
    database_url, redis_url, channel, prefix = sys.argv[5:9]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_every=CHECKPOINT_TRADES,
        commit_interval=CHECKPOINT_S,
        consumer_extra_config={"fetch.queue.backoff.ms": 1, "session.timeout.ms": 6000},
        state_dir=state_dir,
        use_changelog_topics=False,
        auto_create_topics=False,
        loglevel="WARNING",
    )
    source = app.topic(input_topic, value_deserializer="bytes", key_deserializer="bytes")
    sink = PostgresRedisSink(database_url, redis_url, channel, prefix)
    app.dataframe(source).apply(sma_job()).sink(sink)
    app.run()


if __name__ == "__main__":
    main()
