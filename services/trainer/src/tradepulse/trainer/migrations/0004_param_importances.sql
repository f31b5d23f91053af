-- param_importances: optuna's importance of each parameter for the job's objective (its
-- default evaluator, fANOVA, seeded by the job's seed), computed by the holder when the
-- optimization ends; NULL when it could not be computed (fewer than two usable trials).
ALTER TABLE training.jobs ADD COLUMN IF NOT EXISTS param_importances json;
