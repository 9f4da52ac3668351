//! Primary account numbers (PANs): recognising them, replacing them by a keyed token, and
//! keeping them out of any text Vigil writes.

use std::borrow::Cow;
use std::fmt::Write as _;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;

/// Whether `s` is a card number: 13 to 19 digits passing the Luhn check.
pub fn is_pan(s: &str) -> bool {
    (MIN_DIGITS..=MAX_DIGITS).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && luhn_valid(s.as_bytes())
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Replaces PANs by keyed tokens: `411111-<16 hex digits of HMAC-SHA256>-1111`. The same PAN and
/// key always give the same token, so a card's windows survive the replacement; without the key
/// a token cannot be tied back to its PAN.
#[derive(Clone)]
pub struct PanTokenizer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for PanTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PanTokenizer { key: <hidden> }")
    }
}

impl PanTokenizer {
    pub fn new(key: &[u8]) -> Self {
        Self {
            mac: Hmac::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// `card_id` itself when it is not a PAN, else its token.
    pub fn tokenize<'a>(&self, card_id: &'a str) -> Cow<'a, str> {
        if !is_pan(card_id) {
            return Cow::Borrowed(card_id);
        }
        let mut mac = self.mac.clone();
        mac.update(card_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut token = String::with_capacity(28);
        token.push_str(&card_id[..6]);
        token.push('-');
        for b in &digest[..8] {
            let _ = write!(token, "{b:02x}");
        }
        token.push('-');
        token.push_str(&card_id[card_id.len() - 4..]);
        Cow::Owned(token)
    }
}

/// `text` with every PAN in it masked to its BIN and last 4 (`411111******1111`), for messages
/// that may quote what a client sent.
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let run = &text[start..i];
        if is_pan(run) {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..start]);
            out.push_str(&run[..6]);
            out.extend(std::iter::repeat_n('*', run.len() - 10));
            out.push_str(&run[run.len() - 4..]);
            copied = i;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISA: &str = "4111111111111111";

    #[test]
    fn pans_are_recognised_by_length_and_luhn() {
        assert!(is_pan(VISA));
        assert!(is_pan("378282246310005"), "15-digit Amex");
        assert!(!is_pan("4111111111111112"), "Luhn fails");
        assert!(!is_pan("411111111111"), "too short");
        assert!(!is_pan("card-4111111111111111"));
    }

    #[test]
    fn tokens_keep_bin_and_last_four_and_depend_on_the_key() {
        let a = PanTokenizer::new(b"key a");
        let token = a.tokenize(VISA);
        assert!(
            token.starts_with("411111-") && token.ends_with("-1111"),
            "{token}"
        );
        assert!(!token.contains(VISA));
        assert_eq!(token, a.tokenize(VISA), "deterministic");
        assert_ne!(token, PanTokenizer::new(b"key b").tokenize(VISA));
        assert_eq!(a.tokenize("card-17"), "card-17", "tokens pass through");
    }

    #[test]
    fn redaction_masks_pans_only() {
        assert_eq!(
            redact(&format!("bad value \"{VISA}\" at 12345")),
            "bad value \"411111******1111\" at 12345"
        );
        assert!(matches!(redact("nothing 12345"), Cow::Borrowed(_)));
        assert_eq!(
            redact(&format!("{VISA},{VISA}")),
            "411111******1111,411111******1111"
        );
    }
}
