-- 005: /ready asks for the newest cursor update on every probe.
CREATE INDEX ingestion_cursors_updated ON ingestion_cursors (updated_at DESC);
