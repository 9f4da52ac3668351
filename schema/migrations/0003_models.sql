-- The model registry: every trained model, its provenance and metrics, and which one serves.

CREATE TABLE models (
    version           text PRIMARY KEY,
    kind              text        NOT NULL,
    status            text        NOT NULL DEFAULT 'candidate'
                      CHECK (status IN ('candidate', 'shadow', 'champion', 'retired')),
    -- Fingerprint of the feature names the model reads, in order.
    feature_schema    text        NOT NULL,
    trained_from      timestamptz NOT NULL,
    trained_to        timestamptz NOT NULL,
    -- The evaluation on the validation period (JSON), when there was one.
    validation        jsonb,
    code_version      text        NOT NULL,
    -- The whole artifact, as JSON (`vigil models export` writes these bytes to a file).
    artifact          bytea       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    status_changed_at timestamptz NOT NULL DEFAULT now()
);
-- At most one champion.
CREATE UNIQUE INDEX models_one_champion ON models (status) WHERE status = 'champion';

-- What each shadow model said of each decision, written with the decision; never acted on.
CREATE TABLE shadow_scores (
    transaction_id text NOT NULL,
    model_version  text NOT NULL,
    score          real NOT NULL,
    decision       text NOT NULL CHECK (decision IN ('approve', 'review', 'decline')),
    PRIMARY KEY (transaction_id, model_version)
);
