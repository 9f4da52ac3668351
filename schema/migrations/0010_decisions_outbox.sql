-- The transactional outbox of `decisions.v1`: each commit of decisions adds, in the same
-- transaction, a row naming them; the row is deleted once the broker has acknowledged them.
-- A row older than a few seconds is a batch whose records were not acknowledged (a crash
-- between the commit and the send, a broker outage): the scorer's relay produces it again from
-- `decisions`. Downstream consumers dedupe on `transaction_id`.
CREATE TABLE decisions_outbox (
    id              bigserial   PRIMARY KEY,
    transaction_ids text[]      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
