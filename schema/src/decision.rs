//! What the scoring service decides, as published on `decisions.v1` for downstream systems.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// What to do with a transaction, from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Approve,
    Review,
    Decline,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Review => "review",
            Action::Decline => "decline",
        }
    }

    /// The action `as_str` names.
    pub fn parse(s: &str) -> Option<Self> {
        [Action::Approve, Action::Review, Action::Decline]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    /// Whether this decision raises an alert for investigators.
    pub fn is_alert(self) -> bool {
        self != Action::Approve
    }
}

/// One decision (v1 contract of `decisions.v1`, keyed by `card_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord<'a> {
    #[serde(borrow)]
    pub transaction_id: Cow<'a, str>,
    #[serde(borrow)]
    pub card_id: Cow<'a, str>,
    #[serde(borrow)]
    pub merchant_id: Cow<'a, str>,
    pub occurred_at: Timestamp,
    pub amount_minor: u64,
    /// Risk of fraud in [0, 1].
    pub score: f32,
    pub decision: Action,
    /// The model that scored it.
    #[serde(borrow)]
    pub model_version: Cow<'a, str>,
    /// Reason codes of the rules that held, then the model's top features:
    /// `VELOCITY_BURST;card_count_10m:+1.52`.
    #[serde(borrow)]
    pub reasons: Cow<'a, str>,
}

/// What the scoring service tells the intake instance waiting on a transaction
/// ([`crate::topics::REPLY_TO_HEADER`]), once what it did with it is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply<'a> {
    /// Decided (now, or before: a repeat is answered with the decision first committed).
    Decided {
        #[serde(borrow)]
        transaction_id: Cow<'a, str>,
        decision: Action,
        score: f32,
        /// As on `decisions.v1`: `;`-separated.
        #[serde(borrow)]
        reasons: Cow<'a, str>,
        #[serde(borrow)]
        model_version: Cow<'a, str>,
    },
    /// Not decided, and never will be: its dead letter says why (its id names another
    /// payment, say).
    Refused {
        #[serde(borrow)]
        transaction_id: Cow<'a, str>,
        #[serde(borrow)]
        reason: Cow<'a, str>,
    },
}

impl Reply<'_> {
    pub fn into_owned(self) -> Reply<'static> {
        match self {
            Reply::Decided {
                transaction_id,
                decision,
                score,
                reasons,
                model_version,
            } => Reply::Decided {
                transaction_id: transaction_id.into_owned().into(),
                decision,
                score,
                reasons: reasons.into_owned().into(),
                model_version: model_version.into_owned().into(),
            },
            Reply::Refused {
                transaction_id,
                reason,
            } => Reply::Refused {
                transaction_id: transaction_id.into_owned().into(),
                reason: reason.into_owned().into(),
            },
        }
    }

    pub fn transaction_id(&self) -> &str {
        match self {
            Reply::Decided { transaction_id, .. } | Reply::Refused { transaction_id, .. } => {
                transaction_id
            }
        }
    }
}
