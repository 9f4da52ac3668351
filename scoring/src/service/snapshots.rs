//! Snapshots: one partition's engine state at a time, with the offsets it matches (and the full
//! chunks of pending vectors filled since, apart), about every `snapshot_min_messages` it reads
//! (partitions in turn; within `snapshot_interval_secs` and `snapshot_max_interval_secs`); and
//! the shared state with the shares' offsets after partitions were saved; encoded and written
//! in the background, at a lower priority, never blocking the loop.

use std::time::{Duration, Instant};

use super::consumer::Shared;
use super::events::{ServiceEvent, Sink};
use super::partition::snapshot_phase;
use super::{Loop, background};
use crate::engine::PartCopy;

impl Loop {
    /// Saves the state of the partition whose snapshot is the most overdue, with the offsets
    /// it has read up to. Taken between batches, when each partition's state is exactly what
    /// its committed offsets say; one partition at a time. The stream pauses only to copy the
    /// partition (flat pages of windows and pending entries; the vectors of full chunks are
    /// shared, not copied); serializing, compressing and writing the copy happen off the
    /// scoring thread.
    pub(super) fn snapshot(&mut self) {
        if self
            .snapshot_write
            .as_ref()
            .is_some_and(|w| !w.is_finished())
        {
            return;
        }
        let shared = self.shared.clone();
        let mut guard = shared.instance.lock().expect("no panic while locked");
        let instance = &mut *guard;
        let partitions = instance.engine.partitions();
        let Some((&p, partition)) = instance
            .partitions
            .iter_mut()
            .filter(|(p, part)| {
                part.snapshot_due(&self.config, snapshot_phase(**p, partitions, &self.config))
            })
            .min_by_key(|(_, part)| part.snapshot_taken)
        else {
            return;
        };
        let started = Instant::now();
        let copy = instance.engine.part_copy(p as usize);
        // The state is the state after the last batch handed over; it is saved once that batch
        // is committed, since a snapshot ahead of the offsets in Postgres would skip it.
        let committed = shared.commits.committed(shared.commits.last_handed());
        let position = partition.position;
        let chunks_saved_to = partition.chunks_saved_to;
        partition.snapshot_at = Some(position);
        partition.snapshot_taken = Some(started);
        partition.chunks_saved_to = copy.full_chunks_to();
        drop(guard);
        self.partitions_saved_since_shared = true;
        let taken_ms = started.elapsed().as_millis() as u64;
        let metrics = self.metrics.clone();
        self.snapshot_write = Some(shared.handle.clone().spawn(async move {
            let saved = save_snapshot(&shared, p, position, copy, chunks_saved_to, committed);
            match saved.await {
                Ok(Some((bytes, chunks))) => ServiceEvent::SnapshotSaved {
                    partition: p,
                    bytes,
                    chunks,
                    taken_ms,
                    written_ms: started.elapsed().as_millis() as u64,
                }
                .emit(&metrics),
                Ok(None) => tracing::info!(
                    partition = p,
                    "snapshot not saved: a newer one is stored, saved by another instance"
                ),
                Err(e) => {
                    metrics.sink_errors_of(Sink::Postgres).inc();
                    tracing::warn!(partition = p, error = %e, "snapshot not saved");
                }
            }
        }));
    }

    /// Saves the shared state, with the inbox of shares it goes on from, when it has been
    /// pooled further and partitions were saved since (or `snapshot_max_interval_secs` passed),
    /// at most every `snapshot_interval_secs`. It is a function of the shares alone, so it is
    /// saved at once (not after a commit), and every instance saves the same.
    pub(super) fn snapshot_shared(&mut self) {
        let interval = Duration::from_secs(self.config.snapshot_interval_secs);
        let longest = Duration::from_secs(self.config.snapshot_max_interval_secs);
        let due = |taken: Instant| {
            taken.elapsed() >= interval
                && (self.partitions_saved_since_shared || taken.elapsed() >= longest)
        };
        if self.shared_write.as_ref().is_some_and(|w| !w.is_finished())
            || self.shared_taken.is_some_and(|(t, _)| !due(t))
        {
            return;
        }
        let shared = self.shared.clone();
        let instance = shared.instance.lock().expect("no panic while locked");
        let pooled_to = instance.engine.pooled_to();
        if !instance.shared_loaded
            || pooled_to == i64::MIN
            || self.shared_taken.is_some_and(|(_, at)| at >= pooled_to)
        {
            return;
        }
        let copy = instance.engine.shared_copy();
        let inbox = instance.inbox.to_bytes();
        let partitions = instance.engine.partitions();
        drop(instance);
        self.shared_taken = Some((Instant::now(), pooled_to));
        self.partitions_saved_since_shared = false;
        let metrics = self.metrics.clone();
        self.shared_write = Some(shared.handle.clone().spawn(async move {
            let Ok(state) = background::run(move || copy.snapshot()).await else {
                tracing::warn!("shared snapshot not taken");
                return;
            };
            let bytes = state.len();
            match shared
                .store
                .save_shared(pooled_to, state, inbox, partitions)
                .await
            {
                Ok(()) => ServiceEvent::SharedSnapshotSaved { pooled_to, bytes }.emit(&metrics),
                Err(e) => {
                    metrics.sink_errors_of(Sink::Postgres).inc();
                    tracing::warn!(error = %e, "shared snapshot not saved");
                }
            }
        }));
    }
}

/// Serializes `copy` (of partition `p`'s state, at `position`), with the full chunks of
/// pending vectors from `chunks_saved_to` on, and saves it once `committed`; returns the state's
/// bytes and the count of chunks saved with it, or `None` when a newer snapshot is stored.
/// Unless saved, the chunks are marked unsaved again, for the next snapshot to save.
pub(super) async fn save_snapshot(
    shared: &Shared,
    p: i32,
    position: [i64; 2],
    copy: PartCopy,
    chunks_saved_to: u64,
    committed: impl Future<Output = ()>,
) -> Result<Option<(usize, usize)>, String> {
    let saved = async {
        let pooled_to = copy.pooled_to();
        let snapshot = background::run(move || copy.snapshot(chunks_saved_to))
            .await
            .map_err(|e| format!("not taken: {e}"))?;
        let sizes = (snapshot.state.len(), snapshot.new_chunks.len());
        committed.await;
        let saved = shared
            .store
            .save_snapshot(p, position, pooled_to, snapshot)
            .await;
        Ok(saved.map_err(|e| e.to_string())?.then_some(sizes))
    };
    let saved = saved.await;
    if !matches!(saved, Ok(Some(_))) {
        let mut instance = shared.instance.lock().expect("no panic while locked");
        if let Some(partition) = instance.partitions.get_mut(&p) {
            partition.chunks_saved_to = partition.chunks_saved_to.min(chunks_saved_to);
        }
    }
    saved
}
