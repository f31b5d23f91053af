-- Trained configurations, their status history and the outbox of ConfigPromoted events
-- (owned by services/registry).
--
-- params, metrics and settings are `json`, not `jsonb`: json keeps the text json.dumps wrote,
-- so every float reads back bit for bit with its type. jsonb re-prints numbers as numeric,
-- which turns -0.0 into 0.0 and 1e+16 into the integer 10000000000000000.
CREATE TABLE IF NOT EXISTS registry.configs (
    config_id          text PRIMARY KEY,
    job_id             text NOT NULL UNIQUE,
    status             text NOT NULL
                       CHECK (status IN ('DISCOVERY', 'CANDIDATE', 'PAPER', 'LIVE', 'RETIRED')),
    strategy           text NOT NULL,
    exchange           text NOT NULL,
    symbol             text NOT NULL,
    timeframe          text NOT NULL,
    regime             text NOT NULL,
    optimizer          text NOT NULL,
    seed               bigint NOT NULL,
    objective          text NOT NULL,
    n_iterations       integer NOT NULL,
    best_trial         integer NOT NULL,
    best_value         double precision NOT NULL,
    params             json NOT NULL,
    metrics            json NOT NULL,
    fingerprint        text NOT NULL,
    settings           json NOT NULL,
    -- The data window: rows [window_begin, window_stop) of a dataset snapshot with this content.
    snapshot           text NOT NULL,
    content_hash       text NOT NULL,
    window_begin       integer NOT NULL,
    window_stop        integer NOT NULL,
    trade_from         integer NOT NULL,
    first_ms           bigint NOT NULL,
    last_ms            bigint NOT NULL,
    sampler            text NOT NULL,
    sampler_version    text NOT NULL,
    batch_size         integer NOT NULL,
    code_version       text NOT NULL,
    source_message_id  text NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS configs_status ON registry.configs (status);
CREATE INDEX IF NOT EXISTS configs_created ON registry.configs (created_at);
CREATE INDEX IF NOT EXISTS configs_symbol ON registry.configs (symbol);
CREATE INDEX IF NOT EXISTS configs_strategy ON registry.configs (strategy);

CREATE TABLE IF NOT EXISTS registry.status_history (
    config_id    text NOT NULL REFERENCES registry.configs (config_id) ON DELETE CASCADE,
    seq          integer NOT NULL CHECK (seq >= 1),
    from_status  text
                 CHECK (from_status IN ('DISCOVERY', 'CANDIDATE', 'PAPER', 'LIVE', 'RETIRED')),
    to_status    text NOT NULL
                 CHECK (to_status IN ('DISCOVERY', 'CANDIDATE', 'PAPER', 'LIVE', 'RETIRED')),
    reason       text NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (config_id, seq)
);

-- Events written in the transaction that made them true, published afterwards; a row with
-- sent_at NULL was committed but maybe not published, and is published again.
CREATE TABLE IF NOT EXISTS registry.outbox (
    id          bigserial PRIMARY KEY,
    message_id  text NOT NULL UNIQUE,
    subject     text NOT NULL,
    payload     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON registry.outbox (id) WHERE sent_at IS NULL;
