-- Files uploaded through the gateway arrive as objects: a third source of ingests.
ALTER TABLE market.ingests DROP CONSTRAINT IF EXISTS ingests_source_check;
ALTER TABLE market.ingests
    ADD CONSTRAINT ingests_source_check CHECK (source IN ('file', 'upload', 'exchange'));
