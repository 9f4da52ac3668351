//! Turning a checked event into what is produced: a raw card number replaced by its token, the
//! Kafka key (`card_id`), and the canonical JSON payload.

use std::borrow::Cow;

use vigil_schema::pan::PanTokenizer;
use vigil_schema::{CardId, Label, Transaction};

/// A record ready to produce: its key and payload.
pub type Prepared = (String, Vec<u8>);

pub fn transaction(mut tx: Transaction<'_>, tokenizer: &PanTokenizer) -> Prepared {
    if let Some(token) = token(tokenizer, &tx.card_id) {
        tx.card_id = token;
    }
    let payload = serde_json::to_vec(&tx).expect("a transaction serializes");
    (tx.card_id.as_str().to_owned(), payload)
}

/// Without a card, the transaction id keys a label: it may then reach another partition than
/// its transaction (see docs/ARCHITECTURE.md).
pub fn label(mut label: Label<'_>, tokenizer: &PanTokenizer) -> Prepared {
    if let Some(token) = label.card_id.as_ref().and_then(|c| token(tokenizer, c)) {
        label.card_id = Some(token);
    }
    let key = label_key(&label).to_owned();
    let payload = serde_json::to_vec(&label).expect("a label serializes");
    (key, payload)
}

/// The Kafka key of a label whose card id is tokenized already.
fn label_key<'a>(label: &'a Label<'_>) -> &'a str {
    label
        .card_id
        .as_ref()
        .map_or(label.transaction_id.as_str(), CardId::as_str)
}

/// The partition of `partitions` a transaction is produced to.
pub fn transaction_partition(
    tx: &Transaction<'_>,
    tokenizer: &PanTokenizer,
    partitions: u32,
) -> u32 {
    let token = token(tokenizer, &tx.card_id);
    let card = token.as_ref().unwrap_or(&tx.card_id);
    crate::kafka::partition_of(card.as_str(), partitions)
}

/// The partition of `partitions` a label is produced to.
pub fn label_partition(label: &Label<'_>, tokenizer: &PanTokenizer, partitions: u32) -> u32 {
    let token = label.card_id.as_ref().and_then(|c| token(tokenizer, c));
    let key = token
        .as_ref()
        .map_or_else(|| label_key(label), CardId::as_str);
    crate::kafka::partition_of(key, partitions)
}

/// The token of a card id that is a raw card number.
pub fn token(tokenizer: &PanTokenizer, card: &CardId<'_>) -> Option<CardId<'static>> {
    match tokenizer.tokenize(card.as_str()) {
        Cow::Borrowed(_) => None,
        Cow::Owned(token) => Some(CardId::parse(token).expect("a token is a valid card id")),
    }
}
