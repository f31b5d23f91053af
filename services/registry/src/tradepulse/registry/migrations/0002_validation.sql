-- A configuration's overfitting statistics (validation spec sections 1-2): the job's report
-- as json (read back bit for bit), and its two headline figures as columns to filter and
-- sort on. NULL for configurations made before the report existed, or where the spec's
-- figure is null.
ALTER TABLE registry.configs ADD COLUMN IF NOT EXISTS validation json;
ALTER TABLE registry.configs ADD COLUMN IF NOT EXISTS dsr double precision;
ALTER TABLE registry.configs ADD COLUMN IF NOT EXISTS pbo double precision;
CREATE INDEX IF NOT EXISTS configs_dsr ON registry.configs (dsr);
CREATE INDEX IF NOT EXISTS configs_pbo ON registry.configs (pbo);
