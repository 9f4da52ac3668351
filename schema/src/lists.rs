//! Allow and block lists: which list, and what kind of value an entry names. The investigator
//! API edits them; the scoring service honours them (decline on block, no alert on allow).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ListName {
    Allow,
    Block,
}

/// What an entry's value is: a card (its token; a raw card number is tokenized first), a
/// merchant id, a device id or an ISO 3166 country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Card,
    Merchant,
    Device,
    Country,
}

impl ListName {
    pub const ALL: [ListName; 2] = [ListName::Allow, ListName::Block];

    pub fn as_str(self) -> &'static str {
        match self {
            ListName::Allow => "allow",
            ListName::Block => "block",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Card,
        ListKind::Merchant,
        ListKind::Device,
        ListKind::Country,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Card => "card",
            ListKind::Merchant => "merchant",
            ListKind::Device => "device",
            ListKind::Country => "country",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The reason code a decision carries when an entry of this kind on `list` matched:
    /// `BLOCKLIST_CARD`, `ALLOWLIST_MERCHANT`, ...
    pub fn reason(self, list: ListName) -> &'static str {
        match (list, self) {
            (ListName::Block, ListKind::Card) => "BLOCKLIST_CARD",
            (ListName::Block, ListKind::Merchant) => "BLOCKLIST_MERCHANT",
            (ListName::Block, ListKind::Device) => "BLOCKLIST_DEVICE",
            (ListName::Block, ListKind::Country) => "BLOCKLIST_COUNTRY",
            (ListName::Allow, ListKind::Card) => "ALLOWLIST_CARD",
            (ListName::Allow, ListKind::Merchant) => "ALLOWLIST_MERCHANT",
            (ListName::Allow, ListKind::Device) => "ALLOWLIST_DEVICE",
            (ListName::Allow, ListKind::Country) => "ALLOWLIST_COUNTRY",
        }
    }
}
