//! Small coded values: currency, country, merchant category code and channel.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::deserialize_parsed;

/// An ISO 4217 alphabetic currency code such as `USD` (three upper-case letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

/// An ISO 3166-1 alpha-2 country code such as `US` (two upper-case letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country([u8; 2]);

/// An ISO 18245 merchant category code, four digits such as `5411`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mcc(u16);

/// How the card was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Card present at a point of sale.
    Pos,
    /// Card not present, online.
    Ecom,
    /// Cash withdrawal.
    Atm,
    /// Mail or telephone order.
    Moto,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Pos, Channel::Ecom, Channel::Atm, Channel::Moto];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Pos => "pos",
            Channel::Ecom => "ecom",
            Channel::Atm => "atm",
            Channel::Moto => "moto",
        }
    }

    pub fn parse(text: &str) -> Result<Self, &'static str> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or("must be one of pos, ecom, atm, moto")
    }
}

fn upper_letters<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes: [u8; N] = text.as_bytes().try_into().ok()?;
    bytes.iter().all(u8::is_ascii_uppercase).then_some(bytes)
}

impl Currency {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        upper_letters(text)
            .map(Self)
            .ok_or("must be an ISO 4217 code of three upper-case letters")
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters can be constructed.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// A compact code for comparisons in rules.
    pub fn code(self) -> u32 {
        u32::from_be_bytes([0, self.0[0], self.0[1], self.0[2]])
    }
}

impl Country {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        upper_letters(text)
            .map(Self)
            .ok_or("must be an ISO 3166-1 alpha-2 code of two upper-case letters")
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// A compact code for comparisons in rules and for per-card country sets.
    pub fn code(self) -> u16 {
        u16::from_be_bytes(self.0)
    }
}

impl Mcc {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        const ERR: &str = "must be a merchant category code of four digits";
        if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ERR);
        }
        text.parse().map(Self).map_err(|_| ERR)
    }

    pub fn code(self) -> u16 {
        self.0
    }
}

macro_rules! string_coded {
    ($name:ident) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_parsed(deserializer, Self::parse)
            }
        }
    };
}

string_coded!(Currency);
string_coded!(Country);
string_coded!(Mcc);

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Serialize for Country {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Serialize for Mcc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Mcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_and_print_back() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
        assert_eq!(Country::parse("DE").unwrap().to_string(), "DE");
        assert!(Country::parse("D").is_err());
        assert_eq!(Mcc::parse("0742").unwrap().to_string(), "0742");
        assert!(Mcc::parse("742").is_err());
        assert!(Mcc::parse("+742").is_err());
        assert_eq!(Channel::parse("ecom"), Ok(Channel::Ecom));
        assert!(Channel::parse("web").is_err());
    }
}
