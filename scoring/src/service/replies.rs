//! Answers to the intake instances waiting on transactions (`POST /v1/transactions?wait=`): a
//! transaction whose message names an instance in the [`topics::REPLY_TO_HEADER`] header gets a
//! [`Reply`] on that instance's channel ([`redis_keys::replies`]) once what became of it is
//! committed: its decision; for a repeat, the decision committed first; for a dead letter, the
//! reason. They are published as soon as the batch's Postgres transaction has committed, before
//! its Redis keys and `decisions.v1` are written, so an answer never comes before its decision
//! is in Postgres (a crash before the commit scores the transaction again, alike, and answers
//! then). A reply is not kept: one lost leaves its request to answer "pending".

use rdkafka::Message as _;
use rdkafka::message::OwnedMessage;
use redis::aio::ConnectionManager;
use vigil_schema::{Reply, redis_keys, topics};

use super::DeadLetter;
use super::main_loop::header;
use super::rows::Decisions;

/// A transaction an intake instance waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub instance: String,
    pub transaction_id: String,
}

/// What a lane owes waiting instances besides its decisions.
#[derive(Debug, Default)]
pub struct Owed {
    /// Repeats: answered with the decision committed first.
    pub repeats: Vec<Waiting>,
    /// Dead letters: answered with their reason.
    pub refused: Vec<(Waiting, String)>,
}

impl Owed {
    /// Owes `letter`'s reason, if an instance waits on its message.
    pub fn refuse(&mut self, letter: &DeadLetter) {
        if let Some(waiting) = waiting(&letter.message, || transaction_id(&letter.message)) {
            self.refused.push((waiting, letter.reason.clone()));
        }
    }
}

/// Who waits on `message`'s transaction, if anyone; `transaction_id` is asked only then.
pub fn waiting(
    message: &OwnedMessage,
    transaction_id: impl FnOnce() -> Option<String>,
) -> Option<Waiting> {
    let instance = header(message, topics::REPLY_TO_HEADER)?;
    Some(Waiting {
        instance,
        transaction_id: transaction_id()?,
    })
}

/// The id of a transaction's message that was not decided (a dead letter's may not even
/// parse: then there is none to answer on).
fn transaction_id(message: &OwnedMessage) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        transaction_id: String,
    }
    let id: Id = serde_json::from_slice(message.payload()?).ok()?;
    Some(id.transaction_id)
}

/// A reply to publish: the instance's id and the reply as JSON.
pub type Published = (String, String);

/// The replies owed for decisions `decisions` made by `model_version`.
pub fn decided<'d>(
    decisions: &'d Decisions,
    model_version: &'d str,
) -> impl Iterator<Item = Published> + 'd {
    decisions
        .sources
        .iter()
        .enumerate()
        .filter_map(move |(i, message)| {
            let instance = header(message, topics::REPLY_TO_HEADER)?;
            let reply = Reply::Decided {
                transaction_id: decisions.transaction_id.get(i).into(),
                decision: decisions.action[i],
                score: decisions.score[i],
                reasons: decisions.reasons.get(i).into(),
                model_version: model_version.into(),
            };
            Some((instance, json(&reply)))
        })
}

/// The replies owed for refusals.
pub fn refused(owed: &Owed) -> impl Iterator<Item = Published> + '_ {
    owed.refused.iter().map(|(waiting, reason)| {
        let reply = Reply::Refused {
            transaction_id: waiting.transaction_id.as_str().into(),
            reason: reason.as_str().into(),
        };
        (waiting.instance.clone(), json(&reply))
    })
}

/// Publishes replies on the waiting instances' channels.
#[derive(Clone)]
pub struct Replier {
    connection: ConnectionManager,
    prefix: String,
}

impl Replier {
    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        Self {
            connection,
            prefix: prefix.to_owned(),
        }
    }

    /// Publishes `replies`, in one round trip.
    pub async fn publish(&mut self, replies: &[Published]) -> redis::RedisResult<()> {
        if replies.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (instance, reply) in replies {
            pipe.publish(redis_keys::replies(&self.prefix, instance), reply)
                .ignore();
        }
        pipe.query_async(&mut self.connection).await
    }
}

pub fn json(reply: &Reply<'_>) -> String {
    serde_json::to_string(reply).expect("a reply serializes")
}
