-- Rules as managed data. A published rule set is an immutable version: its rules (the JSON of
-- the rules language's fields, in order), who wrote the change and who approved it; the live
-- set is the newest version. A rollback publishes an earlier version's rules again.
CREATE TABLE rule_set_versions (
    version      integer     PRIMARY KEY CHECK (version > 0),
    rules        jsonb       NOT NULL,
    author       text        NOT NULL,
    approver     text        NOT NULL,
    -- What the version changed: "add rule x", "roll back to version 3", "seeded from ...".
    summary      text        NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION rule_set_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'published rule sets are immutable: publish a new version instead';
END
$$;
CREATE TRIGGER rule_set_versions_immutable BEFORE UPDATE OR DELETE ON rule_set_versions
    FOR EACH ROW EXECUTE FUNCTION rule_set_versions_immutable();
REVOKE UPDATE, DELETE, TRUNCATE ON rule_set_versions FROM vigil_app;

-- A draft: a change to one rule of the live set, waiting for a second admin's approval. `rule`
-- is the rule as it would be (NULL: the rule is to be removed); `author` made the last change,
-- and may not approve it.
CREATE TABLE rule_drafts (
    rule_id    text        PRIMARY KEY,
    rule       jsonb,
    revision   integer     NOT NULL DEFAULT 1,
    author     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What a rule tested on history reads besides the features: the event fields a condition can
-- name, and the model's own log-odds (the score without the rules); and which rule set version
-- made each decision, with the shadow rules that held.
ALTER TABLE decisions
    ADD COLUMN country          text,
    ADD COLUMN mcc              text,
    ADD COLUMN channel          text,
    ADD COLUMN model_log_odds   real,
    ADD COLUMN rule_set_version integer,
    ADD COLUMN shadow_rules     text[];
