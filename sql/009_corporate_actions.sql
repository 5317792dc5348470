-- 009: the security master and corporate actions, point in time (issue 17).
--
-- A security is the company's share line, whatever its ticker: `security_id` never changes.
-- Its bars are stored under `storage_symbol` (bars.symbol), the universe symbol that sweeps it;
-- `listed_from` / `delisted_on` bound its life, so a ticker reused by another company later
-- (stored under the same string) never mixes with it. `security_tickers` is the ticker history:
-- which ticker meant the security on which dates ([valid_from, valid_to), null = open).
CREATE TABLE securities (
    security_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    storage_symbol text NOT NULL CHECK (storage_symbol ~ '^[A-Z0-9][A-Z0-9.\-]{0,14}$'),
    exchange_mic   text NOT NULL CHECK (exchange_mic ~ '^[A-Z0-9]{4}$'),
    name           text,
    listed_from    date,
    delisted_on    date,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (delisted_on IS NULL OR listed_from IS NULL OR listed_from < delisted_on)
);
-- One live security per storage symbol (a delisted one may share it with its successor).
CREATE UNIQUE INDEX securities_live_symbol ON securities (storage_symbol) WHERE delisted_on IS NULL;

CREATE TABLE security_tickers (
    security_id  bigint NOT NULL REFERENCES securities (security_id),
    ticker       text NOT NULL CHECK (ticker ~ '^[A-Z0-9][A-Z0-9.\-]{0,14}$'),
    valid_from   date NOT NULL DEFAULT '1900-01-01',
    valid_to     date CHECK (valid_to IS NULL OR valid_from < valid_to),
    PRIMARY KEY (ticker, valid_from)
);
CREATE INDEX security_tickers_security ON security_tickers (security_id, valid_from);

-- Corporate actions: append-only versions of each action (`action_key`), as learned
-- (`as_of`) from a provider. A revision or a cancellation is a new version (`cancelled`);
-- "as of T" is the newest version with as_of <= T.
CREATE TABLE corporate_actions (
    action_key    text NOT NULL,
    as_of         timestamptz NOT NULL,
    security_id   bigint NOT NULL REFERENCES securities (security_id),
    kind          text NOT NULL CHECK (kind IN ('split', 'cash_dividend', 'ticker_change', 'delisting')),
    ex_date       date NOT NULL,
    provider      text NOT NULL,
    cancelled     boolean NOT NULL DEFAULT false,
    split_from    double precision CHECK (split_from > 0),
    split_to      double precision CHECK (split_to > 0),
    amount        double precision CHECK (amount > 0),
    currency      text CHECK (currency ~ '^[A-Z]{3}$'),
    record_date   date,
    pay_date      date,
    old_ticker    text,
    new_ticker    text,
    PRIMARY KEY (action_key, as_of),
    CHECK (kind <> 'split' OR (split_from IS NOT NULL AND split_to IS NOT NULL)),
    CHECK (kind <> 'cash_dividend' OR (amount IS NOT NULL AND currency IS NOT NULL)),
    CHECK (kind <> 'ticker_change' OR (old_ticker IS NOT NULL AND new_ticker IS NOT NULL))
);
CREATE INDEX corporate_actions_security ON corporate_actions (security_id, ex_date);
CREATE INDEX corporate_actions_learned ON corporate_actions (as_of);
