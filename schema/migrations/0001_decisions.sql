-- Decisions and alerts of the scoring service, with the consumer offsets and engine snapshots
-- that make its effects exactly-once (stored in the same transaction as the rows they cover).

CREATE TABLE decisions (
    transaction_id text PRIMARY KEY,
    card_id        text        NOT NULL,
    customer_id    text,
    merchant_id    text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    amount_minor   bigint      NOT NULL,
    currency       text        NOT NULL,
    score          real        NOT NULL,
    decision       text        NOT NULL CHECK (decision IN ('approve', 'review', 'decline')),
    model_version  text        NOT NULL,
    -- Reason codes of the rules that held, then the model's top features with their log-odds.
    reasons        text        NOT NULL,
    -- The feature vector the engine scored with: little-endian f32s, NaN for missing.
    features       bytea       NOT NULL,
    decided_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_card_time ON decisions (card_id, occurred_at DESC);
CREATE INDEX decisions_time ON decisions (occurred_at);

CREATE TABLE alerts (
    transaction_id text PRIMARY KEY REFERENCES decisions,
    card_id        text        NOT NULL,
    merchant_id    text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    score          real        NOT NULL,
    decision       text        NOT NULL CHECK (decision IN ('review', 'decline')),
    reasons        text        NOT NULL,
    status         text        NOT NULL DEFAULT 'open',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_status_time ON alerts (status, created_at DESC);

-- Every label the scoring service consumed: the training data's truth.
CREATE TABLE labels (
    transaction_id text        NOT NULL,
    source         text        NOT NULL,
    is_fraud       boolean     NOT NULL,
    labelled_at    timestamptz NOT NULL,
    card_id        text,
    PRIMARY KEY (transaction_id, source)
);

-- The next offset to consume, per consumer group and partition; written in the same
-- transaction as the decisions it covers.
CREATE TABLE consumer_offsets (
    consumer_group text   NOT NULL,
    topic          text   NOT NULL,
    partition      int    NOT NULL,
    next_offset    bigint NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);

-- One engine state per partition, with the offsets it has consumed up to.
CREATE TABLE engine_snapshots (
    consumer_group      text        NOT NULL,
    partition           int         NOT NULL,
    transactions_offset bigint      NOT NULL,
    labels_offset       bigint      NOT NULL,
    state               bytea       NOT NULL,
    taken_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, partition)
);
-- Snapshots are large and written often: stored as they are, not compressed by TOAST.
ALTER TABLE engine_snapshots ALTER COLUMN state SET STORAGE EXTERNAL;
