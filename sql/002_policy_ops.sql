-- 002: policy version notes and the audit trail of /ops/* calls.

ALTER TABLE policy_versions ADD COLUMN note text;

CREATE TABLE ops_audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    client      text,
    method      text NOT NULL,
    path        text NOT NULL,
    status      integer NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ops_audit_recent ON ops_audit (at DESC);
