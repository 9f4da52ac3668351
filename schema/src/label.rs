use serde::{Deserialize, Serialize};

use crate::{CardId, Result, Timestamp, TransactionId, Validate};

/// The truth about a transaction, learned after the fact (v1 contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label<'a> {
    /// The transaction this label is about.
    #[serde(borrow)]
    pub transaction_id: TransactionId<'a>,
    pub is_fraud: bool,
    /// When the truth became known: the label's event time.
    pub labelled_at: Timestamp,
    pub source: LabelSource,
    /// The card, where known (the Kafka key of `labels.v1`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub card_id: Option<CardId<'a>>,
}

impl Label<'_> {
    /// The same label, owning its text.
    pub fn into_owned(self) -> Label<'static> {
        Label {
            transaction_id: self.transaction_id.into_owned(),
            is_fraud: self.is_fraud,
            labelled_at: self.labelled_at,
            source: self.source,
            card_id: self.card_id.map(CardId::into_owned),
        }
    }

    /// The field names, in contract order (also the CSV columns).
    pub const FIELDS: [&'static str; 5] = [
        "transaction_id",
        "is_fraud",
        "labelled_at",
        "source",
        "card_id",
    ];
}

/// Where a label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    Chargeback,
    Investigator,
    Import,
}

impl LabelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelSource::Chargeback => "chargeback",
            LabelSource::Investigator => "investigator",
            LabelSource::Import => "import",
        }
    }
}

impl Validate for Label<'_> {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}
