-- Overfitting statistics (validation spec sections 1-2, 4).
-- block_sums: an evaluated trial's per-block sums of returns, then of squared returns
-- (2*S floats); NULL for a trial not evaluated. float8[] rather than json: asyncpg moves it
-- in binary, so the floats keep their bits and a 3,000-trial job's sums are read in tens
-- of milliseconds where parsing them from json text takes hundreds.
ALTER TABLE training.trials ADD COLUMN IF NOT EXISTS block_sums double precision[];
-- validation: the job's report, computed by its holder before the job is completed.
ALTER TABLE training.jobs ADD COLUMN IF NOT EXISTS validation json;
-- Seed ensembles are found by the id their requests carry.
CREATE INDEX IF NOT EXISTS jobs_ensemble ON training.jobs ((request->>'ensemble_id'))
    WHERE request->>'ensemble_id' IS NOT NULL;
