-- Reads of card data (PCI DSS 10.2.1.1): who read which card's history, by which route, when,
-- and whether they named the card by its number. Append-only like the audit trail, and the
-- services' role may only insert. Not chained: a record per read would queue every read behind
-- the chain's lock.
CREATE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;

CREATE TABLE card_reads (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,
    -- card.risk, alerts.by_card, alert.detail
    what       text        NOT NULL,
    card_id    text        NOT NULL,
    by_number  boolean     NOT NULL
);
CREATE INDEX card_reads_by_card ON card_reads (card_id, at);
CREATE TRIGGER card_reads_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON card_reads
    FOR EACH STATEMENT EXECUTE FUNCTION append_only();
GRANT SELECT, INSERT ON card_reads TO vigil_app;
REVOKE UPDATE, DELETE, TRUNCATE ON card_reads FROM vigil_app;
