-- requires: timescaledb
-- Applied only where the timescaledb extension can be enabled (migrate.py enables it first);
-- elsewhere it stays pending and the plain table's (symbol, time) index serves the reads.
-- `trades` becomes a hypertable on `time` (rows already stored move into chunks), and chunks
-- older than a week are compressed per (exchange, symbol) stream. The unique key's columns are
-- all in segmentby/orderby, so compressed chunks still enforce it. Needs TimescaleDB >= 2.13.
SELECT create_hypertable(
    'trades',
    by_range('time', INTERVAL '1 day'),
    create_default_indexes => FALSE,
    if_not_exists => TRUE,
    migrate_data => TRUE
);
ALTER TABLE trades SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'time DESC, trade_id'
);
SELECT add_compression_policy('trades', compress_after => INTERVAL '7 days', if_not_exists => TRUE);
