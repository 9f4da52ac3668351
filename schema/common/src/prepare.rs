//! Turning a checked event into what is produced: a raw card number replaced by its token, the
//! Kafka key (`card_id`), and the canonical JSON payload.

use std::borrow::Cow;

use vigil_schema::pan::PanTokenizer;
use vigil_schema::{CardId, CustomerId, DeviceId, Label, Transaction};

/// A record ready to produce: its key and payload.
pub type Prepared = (String, Vec<u8>);

pub fn transaction(mut tx: Transaction<'_>, tokenizer: &PanTokenizer) -> Prepared {
    tokenize(&mut tx, tokenizer);
    let payload = serde_json::to_vec(&tx).expect("a transaction serializes");
    (tx.card_id.as_str().to_owned(), payload)
}

/// A card number in `card_id` is replaced by its token, and so is one sent as the
/// `customer_id` or `device_id` (legacy systems key customers by card). `merchant_id` and
/// `transaction_id` are kept as sent: numeric ids of 13 to 19 digits are common there (merchant
/// numbers, payment references), one in ten passing the Luhn check by chance.
pub fn tokenize(tx: &mut Transaction<'_>, tokenizer: &PanTokenizer) {
    if let Some(token) = token(tokenizer, &tx.card_id) {
        tx.card_id = token;
    }
    if let Some(customer) = &tx.customer_id
        && let Cow::Owned(token) = tokenizer.tokenize(customer.as_str())
    {
        tx.customer_id = Some(CustomerId::parse(token).expect("a token is a valid id"));
    }
    if let Some(device) = &tx.device_id
        && let Cow::Owned(token) = tokenizer.tokenize(device.as_str())
    {
        tx.device_id = Some(DeviceId::parse(token).expect("a token is a valid id"));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_in_any_id_that_may_hold_one_are_tokenized() {
        let tokenizer = PanTokenizer::new(b"the prepare tests' key");
        let tx: Transaction<'_> = vigil_schema::from_json(
            r#"{"transaction_id": "t1", "occurred_at": "2026-03-01T10:00:00Z",
                "card_id": "4111 1111 1111 1111", "customer_id": "4111-1111-1111-1111",
                "device_id": "4111111111111111", "merchant_id": "m1",
                "amount_minor": 100, "currency": "EUR"}"#,
        )
        .unwrap();
        let (key, payload) = transaction(tx, &tokenizer);
        let payload = String::from_utf8(payload).unwrap();
        let token = tokenizer.tokenize("4111111111111111").into_owned();
        assert_eq!(key, token);
        assert_eq!(payload.matches(&token).count(), 3, "{payload}");
        let digits: String = payload.chars().filter(char::is_ascii_digit).collect();
        assert!(!digits.contains("4111111111111111"), "{payload}");
    }
}
