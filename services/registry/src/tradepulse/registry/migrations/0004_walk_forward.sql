-- Walk-forward jobs (validation spec sections 3 and 5): the job's report and the lifecycle
-- gates computed from it (each gate's value, threshold and verdict), both as json read back
-- bit for bit. NULL for a plain job's configuration.
ALTER TABLE registry.configs ADD COLUMN IF NOT EXISTS walk_forward json;
ALTER TABLE registry.configs ADD COLUMN IF NOT EXISTS gates json;
