-- Walk-forward jobs (validation spec section 3): the report of a job's folds, final
-- optimization and out-of-sample record, computed by its holder before the job is completed.
ALTER TABLE training.jobs ADD COLUMN IF NOT EXISTS walk_forward json;
