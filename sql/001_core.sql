-- 001: core tables of the market-data store.
-- Forward-only: never edit this file once applied; add a new numbered file instead
-- (the runner refuses to start when an applied file's checksum changes).

CREATE TABLE symbol_universe (
    symbol        text PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9][A-Z0-9.\-]{0,14}$'),
    exchange_mic  text NOT NULL CHECK (exchange_mic ~ '^[A-Z0-9]{4}$'),
    tier          text NOT NULL CHECK (tier IN ('T0', 'T1', 'T2')),
    active        boolean NOT NULL DEFAULT true,
    asset_class   text NOT NULL DEFAULT 'equity',
    name          text,
    currency      text,
    added_at      timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX symbol_universe_tier ON symbol_universe (tier, symbol) WHERE active;

-- Point-in-time bars: append-only versions. The current bar of (symbol, interval, ts) is
-- the row with the newest as_of; "as of T" is the newest row with as_of <= T.
CREATE TABLE bars (
    symbol        text NOT NULL,
    interval      text NOT NULL CHECK (interval IN ('1m', '5m', '15m', '1h', '1d')),
    ts            timestamptz NOT NULL,
    as_of         timestamptz NOT NULL,
    provider      text NOT NULL,
    status        text NOT NULL DEFAULT 'final' CHECK (status IN ('final', 'provisional')),
    open          double precision NOT NULL,
    high          double precision NOT NULL,
    low           double precision NOT NULL,
    close         double precision NOT NULL,
    volume        bigint NOT NULL CHECK (volume >= 0),
    vwap          double precision,
    trade_count   integer,
    policy_version integer,
    PRIMARY KEY (symbol, interval, ts, as_of)
) PARTITION BY RANGE (ts);

CREATE TABLE bars_default PARTITION OF bars DEFAULT;

-- Quotes: the latest price source. A re-delivered quote (same symbol, ts, provider) is ignored.
CREATE TABLE quotes (
    symbol        text NOT NULL,
    ts            timestamptz NOT NULL,
    provider      text NOT NULL,
    as_of         timestamptz NOT NULL DEFAULT now(),
    last          double precision NOT NULL,
    bid           double precision,
    ask           double precision,
    bid_size      integer,
    ask_size      integer,
    policy_version integer,
    PRIMARY KEY (symbol, ts, provider)
) PARTITION BY RANGE (ts);

CREATE TABLE quotes_default PARTITION OF quotes DEFAULT;

-- Monthly partitions, created ahead of time by md_maintenance (and here for the near past).
CREATE FUNCTION md_ensure_month_partitions(parent text, first_month date, months integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m date;
    created integer := 0;
    part text;
BEGIN
    FOR i IN 0 .. months - 1 LOOP
        m := (date_trunc('month', first_month) + make_interval(months => i))::date;
        part := format('%s_%s', parent, to_char(m, 'YYYYMM'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                part, parent, m::timestamp AT TIME ZONE 'UTC',
                (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

SELECT md_ensure_month_partitions('bars', (now() - interval '12 months')::date, 16);
SELECT md_ensure_month_partitions('quotes', (now() - interval '2 months')::date, 6);

-- Where each (symbol, interval, provider) has been ingested up to: last_ts is the start
-- of the newest bar received. Advanced in the same transaction as the bars it covers.
CREATE TABLE ingestion_cursors (
    symbol        text NOT NULL,
    interval      text NOT NULL,
    provider      text NOT NULL,
    last_ts       timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    policy_version integer,
    PRIMARY KEY (symbol, interval, provider)
);

-- Ranges a provider answered with "no data" during backfill: minutes without trades,
-- not gaps. Never re-enqueued, never counted by the SLO.
CREATE TABLE confirmed_empty_ranges (
    symbol        text NOT NULL,
    interval      text NOT NULL,
    start_ts      timestamptz NOT NULL,
    end_ts        timestamptz NOT NULL CHECK (end_ts > start_ts),
    provider      text NOT NULL,
    confirmed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, start_ts, end_ts)
);

CREATE TABLE backfill_jobs (
    id            bigserial PRIMARY KEY,
    symbol        text NOT NULL,
    interval      text NOT NULL CHECK (interval IN ('1m', '5m', '15m', '1h', '1d')),
    start_ts      timestamptz NOT NULL,
    end_ts        timestamptz NOT NULL CHECK (end_ts > start_ts),
    tier          text NOT NULL CHECK (tier IN ('T0', 'T1', 'T2')),
    priority      integer NOT NULL,
    source        text NOT NULL CHECK (source IN ('gap', 'manual', 'api')),
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'dead')),
    provider      text,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    lease_until   timestamptz,
    run_id        text,
    policy_version integer,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX backfill_jobs_claim ON backfill_jobs (priority, created_at) WHERE status = 'queued';
CREATE INDEX backfill_jobs_range ON backfill_jobs (symbol, interval, start_ts)
    WHERE status IN ('queued', 'running');
CREATE INDEX backfill_jobs_dead ON backfill_jobs (updated_at) WHERE status = 'dead';

CREATE TABLE policy_versions (
    version       integer PRIMARY KEY,
    body          text NOT NULL,
    checksum      text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    active        boolean NOT NULL DEFAULT false,
    activated_at  timestamptz,
    activated_by  text
);
CREATE UNIQUE INDEX policy_versions_one_active ON policy_versions (active) WHERE active;

CREATE TABLE slo_samples (
    id                bigserial PRIMARY KEY,
    sampled_at        timestamptz NOT NULL DEFAULT now(),
    tier              text NOT NULL,
    interval          text NOT NULL,
    sampled_symbols   integer NOT NULL,
    violating_symbols integer NOT NULL,
    violation_rate    double precision NOT NULL,
    max_gap_seconds   double precision,
    lag_seconds       double precision,
    queue_depth       integer,
    oldest_age_seconds double precision,
    policy_version    integer
);
CREATE INDEX slo_samples_recent ON slo_samples (sampled_at DESC);

-- Malformed RLC messages, kept with the reason they were refused.
CREATE TABLE rejected_jobs (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    source        text NOT NULL,
    reason        text NOT NULL,
    payload       text NOT NULL
);
CREATE INDEX rejected_jobs_recent ON rejected_jobs (received_at DESC);
