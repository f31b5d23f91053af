-- Market data (owned by services/ingest): candles, per-dataset coverage, ingest outcomes.
CREATE TABLE IF NOT EXISTS market.candles (
    exchange   text NOT NULL,
    symbol     text NOT NULL,
    timeframe  text NOT NULL,
    open_time  bigint NOT NULL,
    open       double precision NOT NULL,
    high       double precision NOT NULL,
    low        double precision NOT NULL,
    close      double precision NOT NULL,
    volume     double precision NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, open_time)
);

-- One row per dataset, rewritten by every successful ingest of it: what is stored, its gaps,
-- and the object-store snapshot trainers read.
CREATE TABLE IF NOT EXISTS market.datasets (
    exchange         text NOT NULL,
    symbol           text NOT NULL,
    timeframe        text NOT NULL,
    rows             bigint NOT NULL CHECK (rows > 0),
    first_ms         bigint NOT NULL,
    last_ms          bigint NOT NULL,
    expected_rows    bigint NOT NULL,
    gaps             integer NOT NULL,
    missing_candles  bigint NOT NULL,
    largest_gap      jsonb,
    gap_report       jsonb NOT NULL,
    content_hash     text NOT NULL,
    snapshot         text NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe)
);

-- One row per request: a redelivered request that succeeded is answered from here, not re-applied.
CREATE TABLE IF NOT EXISTS market.ingests (
    request_id     text PRIMARY KEY,
    exchange       text NOT NULL,
    symbol         text NOT NULL,
    timeframe      text NOT NULL,
    source         text NOT NULL CHECK (source IN ('file', 'exchange')),
    status         text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    rows_received  bigint NOT NULL DEFAULT 0,
    rows_added     bigint NOT NULL DEFAULT 0,
    report         jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
