//! The partitions an instance owns: one engine each, with how far it has read.

use crate::Engine;

/// One partition's engine, fed from the same-numbered partition of each consumed topic.
#[derive(Debug)]
pub struct Partition {
    pub engine: Engine,
    /// The next offset the engine will read, per consumed topic (transactions, labels).
    pub position: [i64; 2],
    /// The offsets committed in Postgres when the partition was assigned: messages before them
    /// were decided already and only rebuild the engine's state.
    pub committed: [i64; 2],
    /// Where the last snapshot saved (or loaded) was taken, and when.
    pub snapshot_at: Option<[i64; 2]>,
    pub snapshot_taken: Option<std::time::Instant>,
    /// The engine's full chunks of pending vectors before this sequence number are saved (or
    /// being saved) with a snapshot; the next snapshot saves those from here on.
    pub chunks_saved_to: u64,
}

impl Partition {
    /// Whether the message at `offset` of consumed topic `topic` was decided already.
    pub fn is_replay(&self, topic: usize, offset: i64) -> bool {
        offset < self.committed[topic]
    }

    /// Whether this in-memory state can go on from where Postgres stands: it has read no
    /// further than what was committed (so it holds nothing uncommitted) and no less than the
    /// snapshot (which would be the faster start).
    pub fn can_resume(&self, committed: [i64; 2], snapshot: Option<[i64; 2]>) -> bool {
        let le = |a: [i64; 2], b: [i64; 2]| a[0] <= b[0] && a[1] <= b[1];
        le(self.position, committed) && snapshot.is_none_or(|s| le(s, self.position))
    }
}
