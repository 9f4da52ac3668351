//! Identifier newtypes. Each borrows from the input when it can, so parsing a line allocates
//! nothing for its ids.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// The longest identifier the contract accepts, in characters.
pub const MAX_ID_CHARS: usize = 128;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name<'a>(Cow<'a, str>);

        impl<'a> $name<'a> {
            /// Checks the value against the contract: 1 to 128 characters, no control characters.
            pub fn parse(value: impl Into<Cow<'a, str>>) -> crate::Result<Self> {
                let value = value.into();
                check_id(&value).map_err(|message| crate::Error::new($field, message))?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_owned(self) -> $name<'static> {
                $name(Cow::Owned(self.0.into_owned()))
            }
        }

        impl fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de: 'a, 'a> serde::Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = deserializer.deserialize_str(CowStrVisitor)?;
                check_id(&value).map_err(de::Error::custom)?;
                Ok(Self(value))
            }
        }
    };
}

string_id!(
    /// The unique id of a transaction: the idempotency key everywhere.
    TransactionId,
    "transaction_id"
);
string_id!(
    /// A card token or fingerprint (never a raw card number once past ingest).
    CardId,
    "card_id"
);
string_id!(
    /// The account holder.
    CustomerId,
    "customer_id"
);
string_id!(
    /// The merchant or terminal.
    MerchantId,
    "merchant_id"
);
string_id!(
    /// The device the payment came from.
    DeviceId,
    "device_id"
);

/// The contract's rule for every identifier: 1 to 128 characters, none a control character and
/// none a format character (bidi controls, zero-width characters), which would let two ids look
/// alike on an investigator's screen, or one name pass for another.
pub fn check_id(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("must not be empty");
    }
    // Counting chars only matters when the byte length could exceed the limit.
    if value.len() > MAX_ID_CHARS && value.chars().count() > MAX_ID_CHARS {
        return Err("must be at most 128 characters");
    }
    match value.chars().find(|&c| c.is_control() || is_format(c)) {
        None => Ok(()),
        Some(c) if c.is_control() => Err("must not contain control characters"),
        Some(_) => Err("must not contain format characters (bidi controls, zero-width characters)"),
    }
}

/// The format characters (Unicode general category Cf) of the Basic Multilingual Plane: the
/// soft hyphen, bidi controls, zero-width characters and the like. The patterns of ids in the
/// API's spec and the JSON Schema exclude the same ranges, so the contract says what is refused.
const FORMAT_CHARACTERS: [(char, char); 14] = [
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
];

/// Whether `c` is one of [`FORMAT_CHARACTERS`].
fn is_format(c: char) -> bool {
    // ASCII has none: the common case pays one comparison.
    !c.is_ascii() && FORMAT_CHARACTERS.iter().any(|&(a, b)| (a..=b).contains(&c))
}

/// Deserializes a string, borrowing from the input when the format allows it.
struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Deserializes any value that is written as a string and parsed by `parse`.
pub(crate) fn deserialize_parsed<'de, D, T>(
    deserializer: D,
    parse: fn(&str) -> Result<T, &'static str>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let text = deserializer.deserialize_str(CowStrVisitor)?;
    parse(&text).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(CardId::parse("tok_1").is_ok());
        let err = CardId::parse("").unwrap_err();
        assert_eq!(err.field(), Some("card_id"));
        assert!(MerchantId::parse("m".repeat(128)).is_ok());
        assert!(MerchantId::parse("m".repeat(129)).is_err());
        // 128 characters of two bytes each are still 128 characters.
        assert!(MerchantId::parse("é".repeat(128)).is_ok());
        assert!(DeviceId::parse("a\nb").is_err());
        for spoof in [
            "ana\u{202E}nimda",
            "an\u{200B}a",
            "\u{FEFF}ana",
            "a\u{2066}b",
        ] {
            let err = CustomerId::parse(spoof).unwrap_err();
            assert!(err.message().contains("format characters"), "{spoof:?}");
        }
        assert!(
            MerchantId::parse("café 東京").is_ok(),
            "letters of any script"
        );
    }
}
