-- The live service's own champions (`[engine.retrain]`): every retraining the scheduled job
-- ran, at the event time it trained at (the newest decision's), and what came of it. The job
-- is due again `retrain.every` of event time after the newest row.
CREATE TABLE retrainings (
    at                         timestamptz PRIMARY KEY,
    outcome                    text NOT NULL CHECK (outcome IN ('too_few_frauds', 'kept', 'promoted')),
    -- The model trained (registered as a candidate, or promoted to champion).
    model_version              text REFERENCES models (version),
    -- Frauds among the training examples.
    frauds                     bigint NOT NULL,
    -- Average precision on the held-out stretch, of the new model and of the champion then.
    average_precision          double precision,
    champion_average_precision double precision,
    seconds                    real NOT NULL,
    finished_at                timestamptz NOT NULL DEFAULT now()
);
