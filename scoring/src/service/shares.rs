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
use rdkafka::{ClientConfig, Message, Offset};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use vigil_schema::topics;

use super::ServiceError;
use crate::Engine;
use crate::engine::Share;

/// The shares read and not wholly pooled yet, and how far each partition's have come.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inbox {
    pub shares: Vec<Share>,
    /// Per partition of the stream, the boundary of its newest share read (`i64::MIN` before
    /// the first).
    pub received_to: Vec<i64>,
    /// Per partition of `shares.v1`, the next offset to read.
    pub positions: Vec<i64>,
}

impl Inbox {
    pub fn new(partitions: usize) -> Self {
        Self {
            shares: vec![],
            received_to: vec![i64::MIN; partitions],
            positions: vec![0; partitions],
        }
    }

    /// Passes over a message of another group (or unreadable) at `offset` of `shares.v1`
    /// partition `partition`.
    pub fn pass(&mut self, partition: usize, offset: i64) {
        if let Some(position) = self.positions.get_mut(partition) {
            *position = offset + 1;
        }
    }

    /// Takes a share read at `offset` of `shares.v1` partition `from_partition`. The first
    /// share read for a boundary wins: one handed over again (by a partition replayed after a
    /// restart) is passed over. Returns whether it was taken.
    pub fn receive(&mut self, from_partition: usize, offset: i64, share: Share) -> bool {
        self.pass(from_partition, offset);
        let Some(received) = self.received_to.get_mut(share.partition as usize) else {
            return false;
        };
        if share.to <= *received {
            return false;
        }
        *received = share.to;
        if !share.records.is_empty() {
            self.shares.push(share);
        }
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
        self.shares.retain(|s| !s.records.is_empty());
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
    brokers: &str,
    group: &str,
    fetch_wait_ms: u32,
) -> Result<BaseConsumer, ServiceError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
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
        match message.payload().map(postcard::from_bytes::<Share>) {
            Some(Ok(share)) => taken += usize::from(inbox.receive(partition, offset, share)),
            _ => {
                inbox.pass(partition, offset);
                tracing::error!(
                    partition,
                    offset,
                    "a share that cannot be read is passed over"
                );
            }
        }
    }
    taken
}

/// Shares produced and not yet acknowledged, in the order produced.
#[derive(Default)]
pub struct Outgoing {
    produced: VecDeque<(Share, DeliveryFuture)>,
}

impl Outgoing {
    /// Produces `share` to `shares.v1` (its partition's), keyed by `group`.
    pub fn produce(
        &mut self,
        producer: &FutureProducer,
        group: &str,
        share: Share,
    ) -> Result<(), String> {
        let payload = postcard::to_stdvec(&share).expect("writing to memory cannot fail");
        let record = FutureRecord::to(topics::SHARES)
            .partition(share.partition as i32)
            .key(group)
            .payload(&payload);
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| format!("share to {} not produced: {e}", share.to))?;
        self.produced.push_back((share, delivery));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.produced.is_empty()
    }

    /// Takes the shares the broker has acknowledged into `inbox`, as if read back: one that
    /// landed right where the inbox has read its partition up to is what reading it would
    /// give (the broker says so), so it is pooled without waiting for the consumer. Waits
    /// for the acknowledgements when `wait`. Returns how many were taken, or why one was not
    /// delivered: every partition's scoring would wait for it.
    pub fn acknowledged(
        &mut self,
        handle: &Handle,
        inbox: &mut Inbox,
        wait: bool,
    ) -> Result<usize, String> {
        let mut taken = 0;
        while let Some((share, delivery)) = self.produced.front_mut() {
            let acknowledged = if wait {
                Some(handle.block_on(delivery))
            } else {
                delivery.now_or_never()
            };
            let Some(acknowledged) = acknowledged else {
                break;
            };
            let to = share.to;
            let delivered = match acknowledged {
                Ok(Ok(delivered)) => delivered,
                Ok(Err((e, _))) => return Err(format!("share to {to} not delivered: {e}")),
                Err(e) => return Err(format!("share to {to} not delivered: {e}")),
            };
            let (share, _) = self.produced.pop_front().expect("the front share");
            let partition = delivered.partition as usize;
            if inbox.positions.get(partition) == Some(&delivered.offset) {
                taken += usize::from(inbox.receive(partition, delivered.offset, share));
            }
        }
        Ok(taken)
    }
}
