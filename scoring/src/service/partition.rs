//! What an instance runs: one engine for every partition of the stream ([`Instance`]), of which
//! it owns some ([`Partition`]: how far each has read, and the messages read but not scored).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::message::OwnedMessage;

use super::ServiceConfig;
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

    /// Whether a snapshot of this partition is due: it has read something since the last one
    /// (or the one it was restored from), `snapshot_interval_secs` have passed since the last
    /// it saved, and it has read past a multiple of `snapshot_min_messages` since, or
    /// `snapshot_max_interval_secs` have passed.
    ///
    /// The multiples are offset by `phase`, a share of `snapshot_min_messages` that differs
    /// between partitions ([`snapshot_phase`]): partitions fed alike reach theirs in turn, so
    /// their snapshots stay spread out even after all of them were due at once (after a
    /// restart), instead of stalling the stream together.
    pub fn snapshot_due(&self, config: &ServiceConfig, phase: i64) -> bool {
        if self.snapshot_at == Some(self.position) {
            return false;
        }
        let every = (config.snapshot_min_messages as i64).max(1);
        let cycle = |offsets: [i64; 2]| (offsets[0] + offsets[1] + phase) / every;
        let read_past_a_multiple =
            cycle(self.position) > cycle(self.snapshot_at.unwrap_or_default());
        let Some(taken) = self.snapshot_taken else {
            return read_past_a_multiple;
        };
        let since = taken.elapsed();
        if since < Duration::from_secs(config.snapshot_interval_secs) {
            return false;
        }
        read_past_a_multiple || since >= Duration::from_secs(config.snapshot_max_interval_secs)
    }

    /// Whether this in-memory state can go on from where Postgres stands: it has read no
    /// further than what was committed (so it holds nothing uncommitted) and no less than the
    /// snapshot (which would be the faster start).
    pub fn can_resume(&self, committed: [i64; 2], snapshot: Option<[i64; 2]>) -> bool {
        let le = |a: [i64; 2], b: [i64; 2]| a[0] <= b[0] && a[1] <= b[1];
        le(self.position, committed) && snapshot.is_none_or(|s| le(s, self.position))
    }
}

/// Partition `p`'s share of `snapshot_min_messages` (of `partitions`): where its snapshot
/// multiples start (see [`Partition::snapshot_due`]).
pub fn snapshot_phase(p: i32, partitions: usize, config: &ServiceConfig) -> i64 {
    config.snapshot_min_messages as i64 * i64::from(p) / partitions.max(1) as i64
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

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(read: i64, saved_secs_ago: u64) -> Partition {
        Partition {
            position: [read, 0],
            snapshot_at: Some([0, 0]),
            snapshot_taken: Instant::now().checked_sub(Duration::from_secs(saved_secs_ago)),
            ..Partition::default()
        }
    }

    /// A partition is snapshotted for what it read, not for the time passed: a quiet one waits
    /// until the most interval, a busy one not less than the least.
    #[test]
    fn a_snapshot_is_due_for_what_was_read_within_the_intervals() {
        let config = ServiceConfig {
            snapshot_interval_secs: 10,
            snapshot_min_messages: 1_000,
            snapshot_max_interval_secs: 600,
            ..ServiceConfig::default()
        };
        assert!(partition(1_000, 11).snapshot_due(&config, 0));
        assert!(!partition(1_000, 9).snapshot_due(&config, 0), "too soon");
        assert!(
            !partition(999, 599).snapshot_due(&config, 0),
            "too little read"
        );
        assert!(
            partition(1, 601).snapshot_due(&config, 0),
            "quiet, but the most interval passed"
        );
        assert!(
            !partition(0, 6_000).snapshot_due(&config, 0),
            "nothing read since"
        );
        let never_saved = Partition {
            position: [1_000, 0],
            ..Partition::default()
        };
        assert!(never_saved.snapshot_due(&config, 0));
    }

    /// Partitions that read alike, and were all saved at the same offsets (as after a
    /// restart), come due one after another, a share of the messages apart; and each again
    /// every `snapshot_min_messages`.
    #[test]
    fn partitions_read_alike_take_their_snapshots_in_turn() {
        let config = ServiceConfig {
            snapshot_interval_secs: 0,
            snapshot_min_messages: 1_000,
            ..ServiceConfig::default()
        };
        let phases: Vec<i64> = (0..4).map(|p| snapshot_phase(p, 4, &config)).collect();
        let first_due = |phase| {
            (1..=1_000)
                .find(|&read| partition(read, 1).snapshot_due(&config, phase))
                .unwrap()
        };
        let firsts: Vec<i64> = phases.iter().map(|&phase| first_due(phase)).collect();
        assert_eq!(firsts, [1_000, 750, 500, 250]);
        for (&phase, first) in phases.iter().zip(firsts) {
            let saved_at_first = Partition {
                position: [first + 999, 0],
                snapshot_at: Some([first, 0]),
                snapshot_taken: Some(Instant::now()),
                ..Partition::default()
            };
            assert!(!saved_at_first.snapshot_due(&config, phase));
            let read_one_more = Partition {
                position: [first + 1_000, 0],
                ..saved_at_first
            };
            assert!(read_one_more.snapshot_due(&config, phase));
        }
    }
}
