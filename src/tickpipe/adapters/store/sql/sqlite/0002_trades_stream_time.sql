-- Reads of one exchange's stream (history/latest with `exchange`) by time. Without it they walk
-- the (symbol, time) index past every other exchange's rows of the symbol: seconds on 10M rows
-- when the asked-for exchange has few or no recent trades of that symbol.
CREATE INDEX IF NOT EXISTS trades_stream_time ON trades (exchange, symbol, time DESC);
