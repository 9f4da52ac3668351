//! The shared state across instances. At each pooling boundary, every partition's engine hands
//! its records over (its [`Share`]) to `shares.v1`, in the same-numbered partition, keyed by the
//! consumer group. Every instance reads all of `shares.v1` (assigned, not in the group) into its
//! [`Inbox`] and pools a boundary once every partition's share reaches it: all instances pool
//! the same shares, so they hold the same shared state (the model, merchants, customers).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{Message, Offset};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use vigil_schema::topics;

use super::ServiceError;
use crate::Engine;
use crate::engine::Share;

/// The most bytes of a share one message carries: 5 s of a busy partition can be more than a
/// Kafka message may hold (1 MB by default), so a share is sent in chunks, one after another
/// in its partition.
const CHUNK_BYTES: usize = 256 * 1024;

/// One message of `shares.v1`: chunk `index` of `count` of a share's bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Chunk<'a> {
    index: u32,
    count: u32,
    bytes: &'a [u8],
}

/// A share's chunks read so far in a partition of `shares.v1` (whose position stays at the
/// first of them).
#[derive(Debug, Clone, Default)]
struct Partial {
    next_index: u32,
    bytes: Vec<u8>,
}

/// The shares read and not wholly pooled yet, and how far each partition's have come.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inbox {
    pub shares: Vec<Share>,
    /// Per partition of the stream, the boundary of its newest share read (`i64::MIN` before
    /// the first).
    pub received_to: Vec<i64>,
    /// Per partition of `shares.v1`, the next offset to read: never inside a share's chunks,
    /// so that an inbox saved with a snapshot reads whole shares on.
    pub positions: Vec<i64>,
    /// Per partition of `shares.v1`, the chunks of a share read so far (not saved: read again).
    #[serde(skip)]
    partial: Vec<Option<Partial>>,
}

impl Inbox {
    pub fn new(partitions: usize) -> Self {
        Self {
            shares: vec![],
            received_to: vec![i64::MIN; partitions],
            positions: vec![0; partitions],
            partial: vec![],
        }
    }

    /// Passes over a message of another group (or unreadable) at `offset` of `shares.v1`
    /// partition `partition`.
    pub fn pass(&mut self, partition: usize, offset: i64) {
        if self.partial.get(partition).is_none_or(Option::is_none) {
            self.advance(partition, offset);
        }
    }

    fn advance(&mut self, partition: usize, offset: i64) {
        if let Some(position) = self.positions.get_mut(partition) {
            *position = offset + 1;
        }
    }

    /// Takes a message of this group read at `offset` of `shares.v1` partition `partition`:
    /// a chunk of a share, which is taken (see [`Inbox::receive`]) once its last chunk is read.
    /// A chunk out of sequence (a share produced again after a restart, from its first chunk)
    /// drops the chunks before it. Returns whether a share was taken.
    pub fn read(&mut self, partition: usize, offset: i64, payload: &[u8]) -> Result<bool, String> {
        let chunk: Chunk<'_> =
            postcard::from_bytes(payload).map_err(|e| format!("a share's chunk: {e}"))?;
        if self.partial.len() <= partition {
            self.partial.resize(partition + 1, None);
        }
        let slot = &mut self.partial[partition];
        if chunk.index == 0 {
            *slot = Some(Partial::default());
        }
        let Some(partial) = slot.as_mut().filter(|p| p.next_index == chunk.index) else {
            *slot = None;
            self.pass(partition, offset);
            return Err(format!(
                "chunk {} of {} out of sequence",
                chunk.index, chunk.count
            ));
        };
        partial.bytes.extend_from_slice(chunk.bytes);
        partial.next_index += 1;
        if partial.next_index < chunk.count {
            return Ok(false);
        }
        let bytes = std::mem::take(&mut partial.bytes);
        *slot = None;
        let share = postcard::from_bytes(&bytes).map_err(|e| format!("a share: {e}"));
        match share {
            Ok(share) => Ok(self.receive(partition, offset, share)),
            Err(e) => {
                self.advance(partition, offset);
                Err(e)
            }
        }
    }

    /// Takes a share whose last chunk was read at `offset` of `shares.v1` partition
    /// `from_partition`. The first share read for a boundary wins: one handed over again (by a
    /// partition replayed after a restart) is passed over. Returns whether it was taken.
    pub fn receive(&mut self, from_partition: usize, offset: i64, share: Share) -> bool {
        self.advance(from_partition, offset);
        let Some(received) = self.received_to.get_mut(share.partition as usize) else {
            return false;
        };
        if share.to <= *received {
            return false;
        }
        *received = share.to;
        self.shares.push(share);
        true
    }

    /// The boundary every partition has handed over to: the shared state can be pooled to it.
    pub fn complete_to(&self) -> i64 {
        self.received_to.iter().copied().min().unwrap_or(i64::MIN)
    }

    /// The newest boundary a partition has handed over to.
    pub fn seen_to(&self) -> i64 {
        self.received_to.iter().copied().max().unwrap_or(i64::MIN)
    }

    /// Pools `engine`'s shared state to `boundary`, if every partition's share reaches it;
    /// returns whether it is pooled to `boundary` (or beyond) now.
    pub fn pool(&mut self, engine: &mut Engine, boundary: i64) -> bool {
        if engine.pooled_to() >= boundary {
            return true;
        }
        if self.complete_to() < boundary {
            return false;
        }
        engine.pool(boundary, &mut self.shares);
        // A share pooled through (its records taken, its champion considered) goes.
        let pooled_to = engine.pooled_to();
        self.shares
            .retain(|s| !s.records.is_empty() || s.from >= pooled_to);
        true
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("writing to memory cannot fail")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("shares inbox: {e}"))
    }
}

/// A consumer of all of `shares.v1`, assigned every partition: it joins no group (librdkafka
/// wants a `group.id` all the same), and its offsets are kept with the shared state's
/// snapshots.
pub fn consumer(
    kafka: &vigil_common::kafka::Cluster,
    group: &str,
    fetch_wait_ms: u32,
) -> Result<BaseConsumer, ServiceError> {
    Ok(kafka
        .client()
        .set("group.id", format!("{group}.shares"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .create()?)
}

/// Reads `shares.v1` from the inbox's positions on.
pub fn seek(consumer: &BaseConsumer, inbox: &Inbox) -> Result<(), ServiceError> {
    let mut assignment = TopicPartitionList::new();
    for (p, &offset) in inbox.positions.iter().enumerate() {
        assignment.add_partition_offset(topics::SHARES, p as i32, Offset::Offset(offset))?;
    }
    consumer.assign(&assignment)?;
    Ok(())
}

/// Takes the shares of consumer group `group` that have arrived into `inbox`, waiting up to
/// `wait` for the first; returns how many were taken.
pub fn read(consumer: &BaseConsumer, group: &str, inbox: &mut Inbox, wait: Duration) -> usize {
    let mut taken = 0;
    let mut timeout = wait;
    while let Some(read) = consumer.poll(timeout) {
        timeout = Duration::ZERO;
        let message = match read {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "shares consumer error");
                continue;
            }
        };
        let (partition, offset) = (message.partition() as usize, message.offset());
        if message.key() != Some(group.as_bytes()) {
            inbox.pass(partition, offset);
            continue;
        }
        match inbox.read(partition, offset, message.payload().unwrap_or_default()) {
            Ok(took) => taken += usize::from(took),
            Err(e) => tracing::error!(partition, offset, error = %e, "passed over in shares.v1"),
        }
    }
    taken
}

/// The messages `share` is sent in: its bytes in chunks of at most `chunk_bytes`.
fn chunks(share: &Share, chunk_bytes: usize) -> Vec<Vec<u8>> {
    let bytes = postcard::to_stdvec(share).expect("writing to memory cannot fail");
    let count = bytes.len().div_ceil(chunk_bytes).max(1);
    (0..count)
        .map(|index| {
            let end = bytes.len().min((index + 1) * chunk_bytes);
            let chunk = Chunk {
                index: index as u32,
                count: count as u32,
                bytes: &bytes[index * chunk_bytes..end],
            };
            postcard::to_stdvec(&chunk).expect("writing to memory cannot fail")
        })
        .collect()
}

/// Shares produced and not yet acknowledged, in the order produced, each with its chunks'
/// deliveries.
#[derive(Default)]
pub struct Outgoing {
    produced: VecDeque<(Share, Vec<DeliveryFuture>)>,
}

impl Outgoing {
    /// Produces `share` to `shares.v1` (its partition's), keyed by `group`, in chunks.
    pub fn produce(
        &mut self,
        producer: &FutureProducer,
        group: &str,
        share: Share,
    ) -> Result<(), String> {
        let payloads = chunks(&share, CHUNK_BYTES);
        let mut deliveries = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let record = FutureRecord::to(topics::SHARES)
                .partition(share.partition as i32)
                .key(group)
                .payload(&payload);
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| format!("share to {} not produced: {e}", share.to))?;
            deliveries.push(delivery);
        }
        self.produced.push_back((share, deliveries));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.produced.is_empty()
    }

    /// Takes the shares the broker has acknowledged into `inbox`, as if read back: one whose
    /// chunks landed one after another right where the inbox has read its partition up to is
    /// what reading it would give (the broker says so), so it is pooled without waiting for
    /// the consumer. Waits for the acknowledgements when `wait`. Returns how many were taken,
    /// or why one was not delivered: every partition's scoring would wait for it.
    pub fn acknowledged(
        &mut self,
        handle: &Handle,
        inbox: &mut Inbox,
        wait: bool,
    ) -> Result<usize, String> {
        let mut taken = 0;
        while let Some((share, deliveries)) = self.produced.front_mut() {
            let mut offsets = Vec::with_capacity(deliveries.len());
            for delivery in deliveries.iter_mut() {
                let acknowledged = if wait {
                    Some(handle.block_on(delivery))
                } else {
                    delivery.now_or_never()
                };
                let Some(acknowledged) = acknowledged else {
                    return Ok(taken);
                };
                let to = share.to;
                match acknowledged {
                    Ok(Ok(delivered)) => offsets.push((delivered.partition, delivered.offset)),
                    Ok(Err((e, _))) => return Err(format!("share to {to} not delivered: {e}")),
                    Err(e) => return Err(format!("share to {to} not delivered: {e}")),
                }
            }
            let (share, _) = self.produced.pop_front().expect("the front share");
            let (Some(&(partition, first)), Some(&(_, last))) = (offsets.first(), offsets.last())
            else {
                continue;
            };
            let partition = partition as usize;
            let in_a_row = last - first == offsets.len() as i64 - 1;
            if in_a_row && inbox.positions.get(partition) == Some(&first) {
                taken += usize::from(inbox.receive(partition, last, share));
            }
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Outbox;

    fn share(partition: u32, from: i64, to: i64) -> Share {
        Share {
            partition,
            from,
            to,
            records: Outbox::default(),
            champion: None,
        }
    }

    /// A share in chunks is taken once its last chunk is read, another group's messages in
    /// between passed over; until then the position stays at its first chunk, so that an inbox
    /// saved meanwhile reads it whole again.
    #[test]
    fn a_share_in_chunks_is_taken_whole() {
        let mut inbox = Inbox::new(2);
        let parts = chunks(&share(1, i64::MIN, 10), 4);
        assert!(parts.len() > 2);
        let (first, last) = (parts.first().unwrap(), parts.last().unwrap());
        assert_eq!(inbox.read(1, 0, first), Ok(false));
        inbox.pass(1, 1);
        for (i, chunk) in parts[1..parts.len() - 1].iter().enumerate() {
            assert_eq!(inbox.read(1, 2 + i as i64, chunk), Ok(false));
        }
        assert_eq!(inbox.positions[1], 0);
        let at = parts.len() as i64 + 5;
        assert_eq!(inbox.read(1, at, last), Ok(true));
        assert_eq!(inbox.positions[1], at + 1);
        assert_eq!(inbox.received_to, [i64::MIN, 10]);
        assert_eq!(inbox.complete_to(), i64::MIN);
        assert_eq!(inbox.seen_to(), 10);
    }

    /// A share produced again (by a partition replayed after a restart) is passed over: the
    /// first read wins. Chunks cut short by a restart are dropped when the share starts again.
    #[test]
    fn the_first_share_read_wins_and_a_cut_share_is_read_again() {
        let mut inbox = Inbox::new(1);
        let first = chunks(&share(0, i64::MIN, 10), 4);
        let mut offset = 0;
        let mut read_all = |inbox: &mut Inbox, parts: &[Vec<u8>]| {
            let mut took = false;
            for part in parts {
                took |= inbox.read(0, offset, part).unwrap();
                offset += 1;
            }
            took
        };
        assert!(!read_all(&mut inbox, &first[..2]));
        assert!(
            read_all(&mut inbox, &first),
            "read again from its first chunk"
        );
        assert!(!read_all(&mut inbox, &first), "the same boundary again");
        let next = chunks(&share(0, 10, 15), 4);
        assert!(read_all(&mut inbox, &next));
        assert_eq!(inbox.received_to, [15]);
        assert!(
            inbox.read(0, offset, &next[1]).is_err(),
            "a chunk without its start"
        );
    }
}
