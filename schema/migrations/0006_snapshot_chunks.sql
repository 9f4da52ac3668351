-- Incremental engine snapshots. The feature vectors kept for labels are most of an engine's
-- state, and a full chunk of them (4096) never changes: each is written here once, by the
-- first snapshot that saw it full, and every later snapshot of the partition refers to it.
-- A snapshot needs the chunks from its chunks_from on; those before are deleted with it.
CREATE TABLE engine_snapshot_chunks (
    consumer_group text NOT NULL,
    partition integer NOT NULL,
    -- the sequence number, in the partition's engine, of the chunk's first vector
    first_seq bigint NOT NULL,
    codec text NOT NULL CHECK (codec = 'lz4'),
    vectors bytea NOT NULL,
    PRIMARY KEY (consumer_group, partition, first_seq)
);
-- Compressed already: Postgres's own compression would only cost time.
ALTER TABLE engine_snapshot_chunks ALTER COLUMN vectors SET STORAGE EXTERNAL;

ALTER TABLE engine_snapshots ADD COLUMN chunks_from bigint NOT NULL DEFAULT 0;
