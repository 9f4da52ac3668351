-- The investigator API: alerts as work items, API keys, allow and block lists, the audit trail.

-- What an investigator needs with each alert, fixed when it was decided: the transaction as
-- scored (card tokenized), the explanation under the rules then in force, and the reason codes
-- of the rules that held (for filtering).
ALTER TABLE alerts
    ADD COLUMN transaction  jsonb,
    ADD COLUMN explanation  jsonb,
    ADD COLUMN rules        text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN assignee     text,
    ADD COLUMN disposition  text CHECK (disposition IN ('fraud', 'genuine')),
    ADD COLUMN note         text,
    -- Bumped by every change: a client sends the version it saw, a stale one gets 409.
    ADD COLUMN version      int         NOT NULL DEFAULT 1,
    ADD COLUMN updated_at   timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT alerts_status CHECK (status IN ('open', 'in_review', 'closed')),
    ADD CONSTRAINT alerts_closed_disposed CHECK (status <> 'closed' OR disposition IS NOT NULL);

-- The queue's orders (newest, highest score) under the usual filters, as index scans that stop
-- at the page size. Keys end with the primary key so that a cursor is exact.
DROP INDEX alerts_status_time;
CREATE INDEX alerts_newest ON alerts (occurred_at DESC, transaction_id DESC);
CREATE INDEX alerts_status_newest ON alerts (status, occurred_at DESC, transaction_id DESC);
CREATE INDEX alerts_status_score ON alerts (status, score DESC, occurred_at DESC, transaction_id DESC);
CREATE INDEX alerts_score ON alerts (score DESC, occurred_at DESC, transaction_id DESC);
CREATE INDEX alerts_decision_newest ON alerts (decision, occurred_at DESC, transaction_id DESC);
CREATE INDEX alerts_card ON alerts (card_id, occurred_at DESC, transaction_id DESC);
CREATE INDEX alerts_merchant ON alerts (merchant_id, status, occurred_at DESC, transaction_id DESC);
CREATE INDEX alerts_assignee ON alerts (assignee, status, occurred_at DESC, transaction_id DESC)
    WHERE assignee IS NOT NULL;

-- Each alert's reason codes, one row each, with copies of its sort keys: filtering by a reason
-- is then a range scan in the queue's order that stops at the page, however rare the code.
CREATE TABLE alert_reasons (
    reason         text        NOT NULL,
    transaction_id text        NOT NULL REFERENCES alerts,
    occurred_at    timestamptz NOT NULL,
    score          real        NOT NULL,
    PRIMARY KEY (reason, transaction_id)
);
CREATE INDEX alert_reasons_newest ON alert_reasons (reason, occurred_at DESC, transaction_id DESC);
CREATE INDEX alert_reasons_score
    ON alert_reasons (reason, score DESC, occurred_at DESC, transaction_id DESC);

-- API keys: only the SHA-256 of each key is kept (keys are 256 random bits, so a fast hash is
-- enough); `prefix` is the key's first characters, to tell keys apart in listings and audits.
CREATE TABLE api_keys (
    id           bigserial   PRIMARY KEY,
    name         text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('ingest', 'investigator', 'admin')),
    prefix       text        NOT NULL,
    hash         bytea       NOT NULL UNIQUE,
    -- Requests per second this key may make (a burst of twice as many); NULL: the default.
    rate_per_sec int,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- Allow and block lists. The scoring service reloads the live entries every few seconds:
-- a blocked card, merchant, device or country is declined; an allowed one is not alerted.
CREATE TABLE list_entries (
    id         bigserial   PRIMARY KEY,
    list       text        NOT NULL CHECK (list IN ('allow', 'block')),
    kind       text        NOT NULL CHECK (kind IN ('card', 'merchant', 'device', 'country')),
    value      text        NOT NULL,
    reason     text,
    expires_at timestamptz,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (list, kind, value)
);

-- The audit trail: append-only, each record hashed with the previous record's hash, so that
-- changing, removing or reordering a record breaks the chain (`vigil audit verify`).
CREATE TABLE audit_log (
    seq       bigint      PRIMARY KEY,
    at        timestamptz NOT NULL,
    actor     text        NOT NULL,
    action    text        NOT NULL,
    target    text        NOT NULL,
    -- JSON text as hashed (jsonb would reorder keys and change the bytes).
    before    text,
    after     text,
    prev_hash bytea       NOT NULL,
    hash      bytea       NOT NULL
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
