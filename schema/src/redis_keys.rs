//! The Redis key layout, in one place: the scorer writes these keys and the API reads them.
//! With the configured prefix `P`:
//! - `P:card:{card_id}`: hash of `score`, `decision`, `transaction_id`, `occurred_at` (ms);
//! - `P:card_alerts:{card_id}`: sorted set of the card's alert transaction ids by `occurred_at`;
//! - `P:alerts:recent`: the same over all cards;
//! - channel `P:alerts:live`: each new alert as JSON;
//! - channel `P:replies:{instance}`: the decisions an intake instance waits for
//!   ([`crate::Reply`] as JSON).
//!
//! A card id may hold any printable character, `:` too, so a card's keys differ before the id:
//! a card id can never make one key kind read as another (`P:card:X:alerts` was card X's
//! alerts and card `X:alerts`'s risk at once).

/// A card's latest risk (a hash).
pub fn card(prefix: &str, card_id: &str) -> String {
    format!("{prefix}:card:{card_id}")
}

/// A card's recent alerts (a sorted set).
pub fn card_alerts(prefix: &str, card_id: &str) -> String {
    format!("{prefix}:card_alerts:{card_id}")
}

/// The cards' risk keys, as a `KEYS`/`SCAN` pattern.
pub fn cards_pattern(prefix: &str) -> String {
    format!("{prefix}:card:*")
}

/// The recent alerts over all cards (a sorted set).
pub fn recent_alerts(prefix: &str) -> String {
    format!("{prefix}:alerts:recent")
}

/// The channel new alerts are published on.
pub fn live_alerts(prefix: &str) -> String {
    format!("{prefix}:alerts:live")
}

/// The channel the decisions intake instance `instance` waits for are published on.
pub fn replies(prefix: &str, instance: &str) -> String {
    format!("{prefix}:replies:{instance}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_card_id_makes_a_key_of_another_kind() {
        let ids = [
            "X",
            "X:alerts",
            "alerts",
            ":",
            "X:card:Y",
            "alerts:recent",
            "_alerts:X",
        ];
        let mut keys = vec![recent_alerts("P"), live_alerts("P"), replies("P", "i1")];
        for id in ids {
            keys.push(card("P", id));
            keys.push(card_alerts("P", id));
        }
        let all = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), all, "{keys:?}");
    }
}
