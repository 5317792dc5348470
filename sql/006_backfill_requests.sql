-- 006: backfill requests as resources with a status, and coverage counts of SLO samples.

-- One row per accepted manual request (POST /ops/backfill, or a manual md_backfill trigger).
-- Enqueue coalesces ranges into queued jobs, so one job may serve several requests and a
-- request is linked to the jobs that cover it (backfill_request_jobs), not to a range.
CREATE TABLE backfill_requests (
    id             bigserial PRIMARY KEY,
    source         text NOT NULL CHECK (source IN ('manual', 'api')),
    actor          text NOT NULL,
    symbols        text[] NOT NULL,
    interval       text NOT NULL,
    start_ts       timestamptz NOT NULL,
    end_ts         timestamptz NOT NULL,
    dag_run_id     text,
    policy_version integer,
    inserted       integer NOT NULL DEFAULT 0,
    merged         integer NOT NULL DEFAULT 0,
    refused        jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backfill_requests_recent ON backfill_requests (id DESC);

-- A job absorbed into another by a later enqueue hands its links to the job that absorbed
-- it (enqueue does that before deleting it); a purged dead job takes its links with it.
CREATE TABLE backfill_request_jobs (
    request_id bigint NOT NULL REFERENCES backfill_requests (id) ON DELETE CASCADE,
    job_id     bigint NOT NULL REFERENCES backfill_jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (request_id, job_id)
);
CREATE INDEX backfill_request_jobs_job ON backfill_request_jobs (job_id);

-- Bars a job stored (summed over its runs), and when it was last claimed (queued -> running).
ALTER TABLE backfill_jobs
    ADD COLUMN bars_inserted integer NOT NULL DEFAULT 0,
    ADD COLUMN claimed_at timestamptz;
-- GET /ops/backfills lists jobs newest first, by status and by symbol.
CREATE INDEX backfill_jobs_status_recent ON backfill_jobs (status, id DESC);
CREATE INDEX backfill_jobs_symbol_recent ON backfill_jobs (symbol, id DESC);

-- Coverage of the sampled symbols' SLO windows (md_slo): expected bars, and of those the
-- ones neither stored nor confirmed empty (missing) and the confirmed-empty ones.
ALTER TABLE slo_samples
    ADD COLUMN expected_bars integer,
    ADD COLUMN missing_bars integer,
    ADD COLUMN confirmed_empty_bars integer;
