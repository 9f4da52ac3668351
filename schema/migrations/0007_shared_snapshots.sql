-- The state every partition shares (the online model, merchants, customers) is pooled from the
-- partitions' shares on `shares.v1` by every scoring instance alike; it is saved apart from the
-- partitions' own state, keyed by the boundary it is pooled to. A partition's snapshot records
-- the boundary the shared state was pooled to when it was taken: it goes on exactly from a
-- shared snapshot pooled to that boundary or before, with the shares read after it (`inbox`:
-- the shares not wholly pooled and the offsets of `shares.v1` to read from).
CREATE TABLE shared_snapshots (
    consumer_group text NOT NULL,
    pooled_to bigint NOT NULL,
    codec text NOT NULL CHECK (codec = 'lz4'),
    state bytea NOT NULL,
    inbox bytea NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, pooled_to)
);
ALTER TABLE shared_snapshots ALTER COLUMN state SET STORAGE EXTERNAL;

-- NULL: taken before the first pooling.
ALTER TABLE engine_snapshots ADD COLUMN pooled_to bigint;
