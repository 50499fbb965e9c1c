"""Prometheus metrics of every service. Labels are bounded: exchange (the venues), symbol (the
first `MAX_SYMBOL_LABELS` streams seen, then `OTHER_SYMBOL`), reason (a fixed vocabulary per call
site), outcome."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MAX_SYMBOL_LABELS = 1_000
OTHER_SYMBOL = "_other"
_symbol_labels: set[tuple[str, str]] = set()


def symbol_label(exchange: str, symbol: str) -> str:
    """`symbol`, or `OTHER_SYMBOL` once this many streams have their own label: a topic carrying
    thousands of symbols must not grow the metrics without bound."""
    key = (exchange, symbol)
    if key in _symbol_labels:
        return symbol
    if len(_symbol_labels) >= MAX_SYMBOL_LABELS:
        return OTHER_SYMBOL
    _symbol_labels.add(key)
    return symbol


_BATCH_BUCKETS = (1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# ingest
trades_ingested = Counter(
    "tickpipe_trades_ingested_total", "Trades accepted from a source", ["exchange", "symbol"]
)
frames_rejected = Counter(
    "tickpipe_frames_rejected_total", "Exchange frames dropped, by reason", ["exchange", "reason"]
)
exchange_reconnects = Counter(
    "tickpipe_exchange_reconnects_total", "Exchange connection (re)starts", ["exchange"]
)
trade_id_gaps = Counter(
    "tickpipe_trade_id_gaps_total", "Missing trade ids detected", ["exchange", "symbol"]
)
exchange_connections = Gauge(
    "tickpipe_exchange_connections", "Open connections to the exchange", ["exchange"]
)
venue_up = Gauge(
    "tickpipe_venue_up", "1 while every connection of the venue is open, else 0", ["exchange"]
)
duplicate_trades_dropped = Counter(
    "tickpipe_duplicate_trades_dropped_total", "Trades seen twice at the source", ["exchange"]
)
producer_errors = Counter("tickpipe_producer_errors_total", "Bus delivery failures", ["reason"])
producer_dropped = Counter(
    "tickpipe_producer_dropped_total", "Trades dropped because the bounded bus queue was full"
)
producer_queue_depth = Gauge("tickpipe_producer_queue_depth", "Trades waiting for the bus")

# process
trades_processed = Counter(
    "tickpipe_trades_processed_total", "Trades scored and stored", ["exchange", "symbol"]
)
trades_stored = Counter("tickpipe_trades_stored_total", "New rows written to the store")
dlq_messages = Counter(
    "tickpipe_dlq_messages_total", "Bus messages moved to the dead-letter topic", ["reason"]
)
batch_size = Histogram("tickpipe_batch_size", "Trades per store batch", buckets=_BATCH_BUCKETS)
flush_seconds = Histogram(
    "tickpipe_flush_seconds", "Time to write one batch to the store", buckets=_LATENCY_BUCKETS
)
store_retries = Counter("tickpipe_store_retries_total", "Failed store calls retried")
bus_retries = Counter("tickpipe_bus_retries_total", "Failed bus commits and dead-letters retried")
publish_retries = Counter("tickpipe_publish_retries_total", "Failed update publishes retried")
updates_dropped = Counter(
    "tickpipe_updates_dropped_total", "Live updates not published (pub/sub down too long)"
)
consumer_lag = Gauge("tickpipe_consumer_lag", "Messages behind the end of the topic")
exchange_to_processed_seconds = Histogram(
    "tickpipe_exchange_to_processed_seconds",
    "Exchange trade time to stored",
    buckets=_LATENCY_BUCKETS,
)
ingest_to_published_seconds = Histogram(
    "tickpipe_ingest_to_published_seconds",
    "Ingest time to published as a live update",
    buckets=_LATENCY_BUCKETS,
)

# every service
dependency_outages = Counter(
    "tickpipe_dependency_outages_total",
    "Times a dependency went from answering to failing (database, kafka, redis)",
    ["dependency"],
)
dependency_up = Gauge(
    "tickpipe_dependency_up",
    "1 while a dependency answers its readiness check, 0 while it fails (updated per scrape)",
    ["dependency"],
)

# gateway
websocket_clients = Gauge("tickpipe_websocket_clients", "Connected WebSocket clients")
websocket_dropped = Counter(
    "tickpipe_websocket_dropped_total", "WebSocket clients disconnected", ["reason"]
)
websocket_refused = Counter(
    "tickpipe_websocket_refused_total",
    "WebSocket connections refused at a limit (server_full, address_full)",
    ["reason"],
)
queries_timed_out = Counter(
    "tickpipe_queries_timed_out_total", "Reads cancelled at the query timeout (answered 503)"
)
websocket_frames_sent = Counter("tickpipe_websocket_frames_total", "Frames sent to clients")
feed_resubscribes = Counter(
    "tickpipe_feed_resubscribes_total", "Gateway re-subscriptions to the update feed"
)
