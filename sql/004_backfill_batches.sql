-- 004: which mapped batch a claimed backfill job belongs to, and when each batch ran.

-- '<provider>:<map index>' of the md_backfill run that claimed the job (with run_id):
-- the batch's failure callback marks exactly these jobs dead, and clearing the failed
-- mapped task in Airflow runs exactly them again.
ALTER TABLE backfill_jobs ADD COLUMN batch text;
CREATE INDEX backfill_jobs_batch ON backfill_jobs (run_id, batch) WHERE run_id IS NOT NULL;
CREATE INDEX backfill_jobs_running ON backfill_jobs (lease_until) WHERE status = 'running';

-- Every execution of a backfill batch (one row per try): when it ran, on which provider.
CREATE TABLE backfill_batch_runs (
    id           bigserial PRIMARY KEY,
    run_id       text NOT NULL,
    batch        text NOT NULL,
    provider     text NOT NULL,
    try_number   integer NOT NULL DEFAULT 1,
    job_ids      bigint[] NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    outcome      text,
    jobs_done    integer,
    bars_inserted integer,
    empty_ranges integer
);
CREATE INDEX backfill_batch_runs_run ON backfill_batch_runs (run_id, batch);
