//! The allow and block lists as the scoring service holds them: the live entries of the
//! `list_entries` table, reloaded every few seconds. A blocked card, merchant, device or country
//! is declined; an allowed one is approved instead of alerted. Block wins over allow.

use std::collections::HashSet;

use sqlx::PgPool;
use vigil_schema::{Action, ListKind, ListName, Transaction};

/// A list entry that matched a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ListHit {
    pub list: ListName,
    pub kind: ListKind,
}

impl ListHit {
    pub fn reason(self) -> &'static str {
        self.kind.reason(self.list)
    }

    /// The action once the hit is applied: whatever the engine said, decline on block and
    /// approve (no alert) on allow.
    pub fn action(self) -> Action {
        match self.list {
            ListName::Block => Action::Decline,
            ListName::Allow => Action::Approve,
        }
    }
}

/// The live entries, one set per (list, kind).
#[derive(Debug, Default)]
pub struct Lists {
    sets: [HashSet<Box<str>>; 8],
    len: usize,
}

impl Lists {
    /// The entries that have not expired.
    pub async fn load(pool: &PgPool) -> sqlx::Result<Self> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT list, kind, value FROM list_entries
             WHERE expires_at IS NULL OR expires_at > now()",
        )
        .fetch_all(pool)
        .await?;
        let mut lists = Lists::default();
        for (list, kind, value) in rows {
            if let (Some(list), Some(kind)) = (ListName::parse(&list), ListKind::parse(&kind)) {
                lists.sets[slot(list, kind)].insert(value.into_boxed_str());
                lists.len += 1;
            }
        }
        Ok(lists)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The entry that changes the engine's `action` on `tx`, if any: a block entry, else an
    /// allow entry when the action would alert.
    pub fn check(&self, tx: &Transaction<'_>, action: Action) -> Option<ListHit> {
        if self.len == 0 {
            return None;
        }
        let values = [
            (ListKind::Card, Some(tx.card_id.as_str())),
            (ListKind::Merchant, Some(tx.merchant_id.as_str())),
            (
                ListKind::Device,
                tx.device_id.as_ref().map(vigil_schema::DeviceId::as_str),
            ),
            (
                ListKind::Country,
                tx.country.as_ref().map(vigil_schema::Country::as_str),
            ),
        ];
        let lists: &[ListName] = if action.is_alert() {
            &[ListName::Block, ListName::Allow]
        } else {
            &[ListName::Block]
        };
        lists.iter().find_map(|&list| {
            values.iter().find_map(|&(kind, value)| {
                self.sets[slot(list, kind)]
                    .contains(value?)
                    .then_some(ListHit { list, kind })
            })
        })
    }
}

fn slot(list: ListName, kind: ListKind) -> usize {
    list as usize * ListKind::ALL.len() + kind as usize
}
