-- requires: timescaledb
-- Candles of 1m and above as continuous aggregates (applied after 0003 made `trades` a
-- hypertable; needs TimescaleDB >= 2.13). Each holds one row per (bucket, exchange, symbol) with
-- the columns that postgres_candles.py otherwise computes from `trades` with date_bin, so both
-- paths give the same candles: first_key/last_key are the min/max of (exchange time in seconds,
-- row id, price), i.e. the open and close trades with ties broken by processing order; they
-- merge across exchanges and levels with a plain min/max (no ordered aggregate needed).
-- 1m reads `trades`; 5m, 15m and 1h read 1m; 1d reads 1h (hierarchical aggregates). Buckets use
-- time_bucket's default origin (2000-01-03, a midnight UTC): the same edges as date_bin from the
-- Unix epoch, since every interval divides a day.
-- Real-time (materialized_only = false): buckets past the last refresh are computed from the raw
-- rows at query time, so live trades show at once. The policies refresh from the first trade on
-- (start_offset NULL): a refresh only redoes the ranges that changed, and backfilled history
-- (`tickpipe replay` of old archives, below the watermark) is materialized by the next run.
-- WITH NO DATA: the policies do the first materialization (WITH DATA cannot run in the
-- migration's transaction). end_offset stays one bucket back: a NULL end would move the
-- watermark into the future and turn real-time results off.
CREATE MATERIALIZED VIEW trades_candles_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', time) AS bucket,
       exchange,
       symbol,
       min(ARRAY[extract(epoch FROM time - TIMESTAMPTZ '1970-01-01 00:00:00+00'), id, price])
           AS first_key,
       max(ARRAY[extract(epoch FROM time - TIMESTAMPTZ '1970-01-01 00:00:00+00'), id, price])
           AS last_key,
       max(price) AS high,
       min(price) AS low,
       sum(quantity) AS volume,
       sum(price * quantity) AS notional,
       count(*) AS trade_count
FROM trades
GROUP BY time_bucket(INTERVAL '1 minute', time), exchange, symbol
WITH NO DATA;

-- In the levels above, `GROUP BY bucket` would mean the source's column, not the new bucket:
-- they group by the time_bucket expression itself.
CREATE MATERIALIZED VIEW trades_candles_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '5 minutes', bucket) AS bucket,
       exchange,
       symbol,
       min(first_key) AS first_key,
       max(last_key) AS last_key,
       max(high) AS high,
       min(low) AS low,
       sum(volume) AS volume,
       sum(notional) AS notional,
       sum(trade_count)::bigint AS trade_count
FROM trades_candles_1m
GROUP BY time_bucket(INTERVAL '5 minutes', bucket), exchange, symbol
WITH NO DATA;

CREATE MATERIALIZED VIEW trades_candles_15m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '15 minutes', bucket) AS bucket,
       exchange,
       symbol,
       min(first_key) AS first_key,
       max(last_key) AS last_key,
       max(high) AS high,
       min(low) AS low,
       sum(volume) AS volume,
       sum(notional) AS notional,
       sum(trade_count)::bigint AS trade_count
FROM trades_candles_1m
GROUP BY time_bucket(INTERVAL '15 minutes', bucket), exchange, symbol
WITH NO DATA;

CREATE MATERIALIZED VIEW trades_candles_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       exchange,
       symbol,
       min(first_key) AS first_key,
       max(last_key) AS last_key,
       max(high) AS high,
       min(low) AS low,
       sum(volume) AS volume,
       sum(notional) AS notional,
       sum(trade_count)::bigint AS trade_count
FROM trades_candles_1m
GROUP BY time_bucket(INTERVAL '1 hour', bucket), exchange, symbol
WITH NO DATA;

CREATE MATERIALIZED VIEW trades_candles_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
       exchange,
       symbol,
       min(first_key) AS first_key,
       max(last_key) AS last_key,
       max(high) AS high,
       min(low) AS low,
       sum(volume) AS volume,
       sum(notional) AS notional,
       sum(trade_count)::bigint AS trade_count
FROM trades_candles_1h
GROUP BY time_bucket(INTERVAL '1 day', bucket), exchange, symbol
WITH NO DATA;

SELECT add_continuous_aggregate_policy('trades_candles_1m',
    start_offset => NULL, end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('trades_candles_5m',
    start_offset => NULL, end_offset => INTERVAL '5 minutes',
    schedule_interval => INTERVAL '5 minutes', if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('trades_candles_15m',
    start_offset => NULL, end_offset => INTERVAL '15 minutes',
    schedule_interval => INTERVAL '15 minutes', if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('trades_candles_1h',
    start_offset => NULL, end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('trades_candles_1d',
    start_offset => NULL, end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);
