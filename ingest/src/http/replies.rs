//! Waiting for decisions (`POST /v1/transactions?wait=`): each intake instance has an id of its
//! own, which the records of a waiting request carry in the [`topics::REPLY_TO_HEADER`] header.
//! Once the scoring service has committed what it did with such a record, it publishes a
//! [`Reply`] on the instance's Redis channel ([`redis_keys::replies`]); the instance's one
//! subscription hands each reply to the requests waiting on its transaction id. A reply lost
//! (Redis away, the subscription reconnecting) only leaves its request to answer "pending".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::oneshot;
use tokio::time::Instant;
use vigil_schema::{Reply, redis_keys, topics};

/// A reply as the waiting request takes it.
pub type Answer = Reply<'static>;

/// The requests of this instance waiting on transactions, by transaction id.
#[derive(Debug, Default)]
struct Waiting {
    by_transaction: HashMap<String, Vec<(u64, oneshot::Sender<Answer>)>>,
}

/// This instance's replies: its id, and who waits for what.
#[derive(Debug)]
pub struct Replies {
    instance: String,
    waiting: Mutex<Waiting>,
    next_request: AtomicU64,
}

impl Replies {
    /// Replies for a new instance (a random id), subscribed to its channel on Redis at `url`
    /// by a task of its own that reconnects when Redis goes away.
    pub fn start(url: &str, prefix: &str) -> redis::RedisResult<Arc<Self>> {
        let client = vigil_common::redis::client(url)?;
        let replies = Arc::new(Self::new());
        let channel = redis_keys::replies(prefix, &replies.instance);
        let subscriber = Arc::clone(&replies);
        tokio::spawn(async move {
            loop {
                if let Err(e) = subscriber.forward(&client, &channel).await {
                    tracing::warn!(error = %e, "replies: redis subscription lost; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Ok(replies)
    }

    fn new() -> Self {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("the system has randomness");
        Self {
            instance: format!("{:016x}", u64::from_le_bytes(id)),
            waiting: Mutex::default(),
            next_request: AtomicU64::new(0),
        }
    }

    /// The header a waiting request's records carry.
    pub fn header(&self) -> (&'static str, &str) {
        (topics::REPLY_TO_HEADER, &self.instance)
    }

    /// Waits, from now on, for the replies on `transaction_ids` (registered before the records
    /// are produced, so that no reply can come first).
    pub fn expect<'a>(
        self: &Arc<Self>,
        transaction_ids: impl Iterator<Item = &'a str>,
    ) -> Expected {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let mut waiting = self.waiting.lock().expect("no panic while locked");
        let (ids, receivers) = transaction_ids
            .map(|id| {
                let (sender, receiver) = oneshot::channel();
                waiting
                    .by_transaction
                    .entry(id.to_owned())
                    .or_default()
                    .push((request, sender));
                (id.to_owned(), receiver)
            })
            .unzip();
        Expected {
            replies: Arc::clone(self),
            request,
            ids,
            receivers,
        }
    }

    async fn forward(&self, client: &redis::Client, channel: &str) -> redis::RedisResult<()> {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let payload: Vec<u8> = message.get_payload()?;
            match serde_json::from_slice::<Reply<'_>>(&payload) {
                Ok(reply) => self.hand_over(&reply),
                Err(e) => tracing::warn!(error = %e, "replies: a reply that cannot be read"),
            }
        }
        Ok(())
    }

    /// Gives `reply` to every request waiting on its transaction.
    fn hand_over(&self, reply: &Reply<'_>) {
        let waiters = self
            .waiting
            .lock()
            .expect("no panic while locked")
            .by_transaction
            .remove(reply.transaction_id());
        for (_, sender) in waiters.into_iter().flatten() {
            // A request that stopped waiting has dropped its receiver.
            let _ = sender.send(reply.clone().into_owned());
        }
    }

    fn forget(&self, request: u64, transaction_ids: &[String]) {
        let mut waiting = self.waiting.lock().expect("no panic while locked");
        for id in transaction_ids {
            if let Some(waiters) = waiting.by_transaction.get_mut(id) {
                waiters.retain(|(r, _)| *r != request);
                if waiters.is_empty() {
                    waiting.by_transaction.remove(id);
                }
            }
        }
    }
}

/// The replies one request waits for; dropped, it waits no more.
#[derive(Debug)]
pub struct Expected {
    replies: Arc<Replies>,
    request: u64,
    ids: Vec<String>,
    receivers: Vec<oneshot::Receiver<Answer>>,
}

impl Expected {
    /// Each transaction's reply, in the order registered, or `Err(id)` for those with none by
    /// `deadline`.
    pub async fn until(mut self, deadline: Instant) -> Vec<Result<Answer, String>> {
        let receivers = std::mem::take(&mut self.receivers);
        let waits = receivers
            .into_iter()
            .zip(&self.ids)
            .map(|(receiver, id)| async move {
                match tokio::time::timeout_at(deadline, receiver).await {
                    Ok(Ok(answer)) => Ok(answer),
                    _ => Err(id.clone()),
                }
            });
        futures_util::future::join_all(waits).await
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        // What was answered is no longer registered; the rest is forgotten.
        self.replies.forget(self.request, &self.ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(id: &str) -> Reply<'static> {
        Reply::Decided {
            transaction_id: id.to_owned().into(),
            decision: vigil_schema::Action::Approve,
            score: 0.1,
            reasons: "".into(),
            model_version: "v".into(),
        }
    }

    /// Every request waiting on a transaction gets its reply; what was not answered by the
    /// deadline is reported pending and forgotten, so nothing stays registered.
    #[tokio::test]
    async fn replies_reach_every_waiter_and_what_is_unanswered_is_forgotten() {
        let replies = Arc::new(Replies::new());
        let first = replies.expect(["a", "b"].into_iter());
        let second = replies.expect(["a"].into_iter());
        replies.hand_over(&decided("a"));
        replies.hand_over(&decided("nobody waits"));
        let deadline = Instant::now() + Duration::from_millis(20);
        let answers = first.until(deadline).await;
        assert_eq!(answers[0].as_ref().map(Reply::transaction_id), Ok("a"));
        assert_eq!(answers[1], Err("b".to_owned()));
        let answers = second.until(deadline).await;
        assert_eq!(answers[0].as_ref().map(Reply::transaction_id), Ok("a"));
        let waiting = replies.waiting.lock().unwrap();
        assert!(waiting.by_transaction.is_empty(), "{waiting:?}");
    }

    /// A request dropped while it waits (its client went away) leaves nothing registered.
    #[test]
    fn a_request_given_up_is_forgotten() {
        let replies = Arc::new(Replies::new());
        let kept = replies.expect(["x"].into_iter());
        drop(replies.expect(["x", "y"].into_iter()));
        let waiting = replies.waiting.lock().unwrap();
        assert_eq!(waiting.by_transaction.len(), 1);
        assert_eq!(waiting.by_transaction["x"].len(), 1);
        drop(waiting);
        drop(kept);
        assert!(replies.waiting.lock().unwrap().by_transaction.is_empty());
    }
}
