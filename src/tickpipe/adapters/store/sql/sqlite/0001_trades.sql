-- trades: one row per trade, unique on the contract's key. `id` is the processing order
-- (windows are rebuilt from it after a restart). Prices and quantities are exact decimal text.
CREATE TABLE IF NOT EXISTS trades (
    id          INTEGER PRIMARY KEY,
    time        TEXT    NOT NULL,  -- ISO-8601 UTC, fixed width: 2024-01-01T00:00:00.000000Z
    exchange    TEXT    NOT NULL,
    symbol      TEXT    NOT NULL,
    trade_id    TEXT    NOT NULL,
    price       TEXT    NOT NULL,
    quantity    TEXT    NOT NULL,
    side        TEXT    CHECK (side IN ('buy', 'sell')),
    sma         REAL,
    signal      TEXT    NOT NULL CHECK (signal IN ('BUY', 'SELL', 'HOLD')),
    ingest_time TEXT    NOT NULL,
    UNIQUE (exchange, symbol, trade_id, time)
);
CREATE INDEX IF NOT EXISTS trades_symbol_time ON trades (symbol, time DESC);
CREATE INDEX IF NOT EXISTS trades_stream_order ON trades (exchange, symbol, id);
