-- 003: what md_slo stores besides the 001 columns of slo_samples.
--   active_symbols     active symbols of the tier when sampled (the population; coverage SLO)
--   uncovered_symbols  active symbols with no ingestion cursor for the interval (never ingested;
--                      left out of the lag)
--   lag_p95_seconds    95th percentile of the per-symbol lag (lag_seconds is the worst symbol)
-- plus an index for "latest sample per (tier, interval)" and per-pair history.

ALTER TABLE slo_samples
    ADD COLUMN active_symbols integer,
    ADD COLUMN uncovered_symbols integer,
    ADD COLUMN lag_p95_seconds double precision;

CREATE INDEX slo_samples_pair_recent ON slo_samples (tier, interval, sampled_at DESC);
