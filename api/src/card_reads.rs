//! Reads of card data, logged (PCI DSS 10.2.1.1) in `card_reads`: a card's risk, the alerts
//! filtered by card, an alert with its card's recent transactions. A read whose record cannot
//! be written is not answered. A card named by its number, which turns the API into a way to
//! test guessed numbers (about 10^5 candidates share a BIN and last 4), is also limited per key
//! to `api.card_number_lookups_per_minute`; the token is not.

use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use vigil_schema::CardId;

use crate::error::ApiError;
use crate::{Api, Principal};

/// What was read.
#[derive(Debug, Clone, Copy)]
pub enum CardRead {
    Risk,
    AlertsByCard,
    AlertDetail,
}

impl CardRead {
    fn as_str(self) -> &'static str {
        match self {
            CardRead::Risk => "card.risk",
            CardRead::AlertsByCard => "alerts.by_card",
            CardRead::AlertDetail => "alert.detail",
        }
    }
}

/// Lookups by card number, per key.
pub type NumberLookups = DefaultKeyedRateLimiter<i64>;

pub fn number_lookups(per_minute: u32) -> NumberLookups {
    let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_minute(per_minute))
}

/// The card `card_id` names, as Vigil stores it (a card number becomes its token), its read as
/// `what` by `caller` logged first.
pub async fn read_card(
    api: &Api,
    caller: &Principal,
    what: CardRead,
    card_id: &str,
) -> Result<String, ApiError> {
    CardId::parse(card_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let token = api.tokenizer.tokenize(card_id);
    let by_number = token != card_id;
    if by_number && let Err(wait) = api.number_lookups.check_key(&caller.key_id) {
        let secs = wait.wait_time_from(DefaultClock::default().now()).as_secs() + 1;
        return Err(ApiError::NumberLookupsLimited(secs));
    }
    let token = token.into_owned();
    log(api, caller, what, &token, by_number).await?;
    Ok(token)
}

/// Logs that `caller` read `card_id` (a token, or an id that is no card number) as `what`.
pub async fn log(
    api: &Api,
    caller: &Principal,
    what: CardRead,
    card_id: &str,
    by_number: bool,
) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO card_reads (actor, what, card_id, by_number) VALUES ($1, $2, $3, $4)")
        .bind(caller.actor())
        .bind(what.as_str())
        .bind(card_id)
        .bind(by_number)
        .execute(&api.card_reads)
        .await?;
    Ok(())
}
