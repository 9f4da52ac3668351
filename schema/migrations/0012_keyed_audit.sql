-- The audit chain is keyed: each record's hash is an HMAC whose key the services keep outside
-- the database, so that whoever can write to it cannot recompute the chain. Records from before
-- keep their plain SHA-256 (`keyed` false) and must all come first.
ALTER TABLE audit_log ADD COLUMN keyed boolean NOT NULL DEFAULT false;
