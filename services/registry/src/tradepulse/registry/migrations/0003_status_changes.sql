-- Status changes asked for by operators (validation spec section 5): every history entry says
-- who asked. Entries written before this column were all automatic: the registry's own.
ALTER TABLE registry.status_history
    ADD COLUMN IF NOT EXISTS actor text NOT NULL DEFAULT 'registry';
