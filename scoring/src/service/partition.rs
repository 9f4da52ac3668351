//! What an instance runs: one engine for every partition of the stream ([`Instance`]), of which
//! it owns some ([`Partition`]: how far each has read, and the messages read but not scored).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use rdkafka::message::OwnedMessage;

use super::shares::Inbox;
use crate::Engine;

/// The engine of every partition (the instance's own hold state; the others are empty), the
/// partitions it owns, and the shares read for the shared state.
#[derive(Debug)]
pub struct Instance {
    pub engine: Engine,
    pub partitions: BTreeMap<i32, Partition>,
    pub inbox: Inbox,
    /// Whether the shared state was loaded (from a shared snapshot, or from the start of the
    /// shares) since the service started.
    pub shared_loaded: bool,
    /// Set when the shared state was loaded: the shares consumer must read from the inbox's
    /// positions.
    pub seek_shares: bool,
}

/// One owned partition, fed from the same-numbered partition of each consumed topic.
#[derive(Debug, Default)]
pub struct Partition {
    /// The next offset the engine will read, per consumed topic (transactions, labels).
    pub position: [i64; 2],
    /// The offsets committed in Postgres when the partition was assigned: messages before them
    /// were decided already and only rebuild the engine's state.
    pub committed: [i64; 2],
    /// Where the last snapshot saved (or loaded) was taken, and when.
    pub snapshot_at: Option<[i64; 2]>,
    pub snapshot_taken: Option<Instant>,
    /// The engine's full chunks of pending vectors before this sequence number are saved (or
    /// being saved) with a snapshot; the next snapshot saves those from here on.
    pub chunks_saved_to: u64,
    /// Messages read and not scored yet, in the order read: a transaction waits here until the
    /// shared state is pooled to its boundary.
    pub queue: VecDeque<OwnedMessage>,
    /// Whether the partition is paused in the consumer (its queue is full).
    pub paused: bool,
    /// When the broker last said this partition had more to read than the queue holds (see
    /// `Loop::hand_over_idle`).
    pub checked_end: Option<Instant>,
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

impl Instance {
    pub fn new(engine: Engine) -> Self {
        let partitions = engine.partitions();
        Self {
            engine,
            partitions: BTreeMap::new(),
            inbox: Inbox::new(partitions),
            shared_loaded: false,
            seek_shares: false,
        }
    }
}
