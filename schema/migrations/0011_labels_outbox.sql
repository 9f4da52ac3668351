-- The transactional outbox of the labels alert work gives (an investigator's disposition):
-- written in the transaction that changes the alert, sent to `labels.v1` by the API's relay
-- right after the commit (and again, until the broker acknowledges it), then deleted. Closing
-- an alert never waits for the broker while it holds the alert's row lock.
CREATE TABLE labels_outbox (
    id         bigserial   PRIMARY KEY,
    card_key   text        NOT NULL,
    payload    bytea       NOT NULL,
    sent_by    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
