-- Training jobs and their trials (owned by services/trainer).
-- json, not jsonb: jsonb rewrites numbers (1e16 becomes an integer, -0.0 becomes 0), and
-- figures must read back with the bits the backtest produced.
CREATE TABLE IF NOT EXISTS training.jobs (
    job_id           text PRIMARY KEY,
    request          json NOT NULL,
    status           text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    progress         double precision NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 100),
    trials_done      integer NOT NULL DEFAULT 0,
    n_iterations     integer NOT NULL,
    best_trial       integer,
    best_value       double precision,
    error            text,
    sampler          text,
    sampler_version  text,
    batch_size       integer,
    data_window      json,
    holder           text,
    lease_until      timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jobs_status_created ON training.jobs (status, created_at DESC);

CREATE TABLE IF NOT EXISTS training.trials (
    job_id        text NOT NULL REFERENCES training.jobs (job_id) ON DELETE CASCADE,
    number        integer NOT NULL,
    params        json NOT NULL,
    state         text NOT NULL CHECK (state IN ('complete', 'failed')),
    value         double precision,
    metrics       json NOT NULL,
    fingerprint   text NOT NULL,
    duration_ms   double precision NOT NULL,
    replica       text NOT NULL,
    reason        text,
    system_attrs  json NOT NULL DEFAULT '{}'::json,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, number)
);
