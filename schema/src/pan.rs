//! Primary account numbers (PANs): recognising them, replacing them by a keyed token, and
//! keeping them out of any text Vigil writes.

use std::borrow::Cow;
use std::fmt::Write as _;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;

/// Whether `s` is a card number written as digits only: 13 to 19 digits passing the Luhn check.
pub fn is_pan(s: &str) -> bool {
    (MIN_DIGITS..=MAX_DIGITS).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && luhn_valid(s.as_bytes())
}

/// The digits of `s` when it is a card number, written together (`4111111111111111`) or in
/// groups separated by single spaces or hyphens (`4111 1111 1111 1111`, `4111-1111-1111-1111`),
/// as cards print it and people type it.
pub fn card_number(s: &str) -> Option<Cow<'_, str>> {
    if is_pan(s) {
        return Some(Cow::Borrowed(s));
    }
    // Checked before anything is allocated: most ids are no card number at all.
    let grouped = s
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
        && s.split([' ', '-']).all(|group| !group.is_empty());
    if !grouped {
        return None;
    }
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    is_pan(&digits).then_some(Cow::Owned(digits))
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

    /// `card_id` itself when it is not a PAN, else its token: the same token for the same card
    /// number however it is written (see [`card_number`]).
    pub fn tokenize<'a>(&self, card_id: &'a str) -> Cow<'a, str> {
        let Some(digits) = card_number(card_id) else {
            return Cow::Borrowed(card_id);
        };
        let card_id = digits.as_ref();
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

/// `text` with every PAN in it masked to its BIN and last 4 (`411111******1111`, or
/// `4111 11** **** 1111` as written with separators), for messages that may quote what a client
/// sent and free text that may hold a card number.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    for (start, end) in pan_spans(text) {
        let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
        out.push_str(&text[copied..start]);
        let span = &text[start..end];
        let digits = span.bytes().filter(u8::is_ascii_digit).count();
        let mut seen = 0;
        for c in span.chars() {
            if c.is_ascii_digit() {
                seen += 1;
                let masked = seen > 6 && seen <= digits - 4;
                out.push(if masked { '*' } else { c });
            } else {
                out.push(c);
            }
        }
        copied = end;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The byte ranges of the card numbers in `text`: runs of digits, alone or in groups joined by
/// single spaces or hyphens, whose digits are a PAN. In a run of groups, the longest PAN from
/// each group on is taken, so a number written next to a card's groups does not hide it.
fn pan_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = vec![];
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // The groups of this run: digits, then a single separator followed by a digit, ...
        let mut groups = vec![];
        loop {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            groups.push((start, i));
            let joined = i + 1 < bytes.len()
                && matches!(bytes[i], b' ' | b'-')
                && bytes[i + 1].is_ascii_digit();
            if !joined {
                break;
            }
            i += 1;
        }
        let mut first = 0;
        while first < groups.len() {
            match longest_pan_from(text, &groups[first..]) {
                Some(last) => {
                    spans.push((groups[first].0, groups[first + last].1));
                    first += last + 1;
                }
                None => first += 1,
            }
        }
    }
    spans
}

/// The index of the last group of the longest PAN that starts with `groups[0]`.
fn longest_pan_from(text: &str, groups: &[(usize, usize)]) -> Option<usize> {
    let mut digits = String::new();
    let mut longest = None;
    for (k, &(start, end)) in groups.iter().enumerate() {
        digits.push_str(&text[start..end]);
        if digits.len() > MAX_DIGITS {
            break;
        }
        if is_pan(&digits) {
            longest = Some(k);
        }
    }
    longest
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

    #[test]
    fn card_numbers_are_recognised_however_they_are_grouped() {
        for written in [
            VISA,
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "3782 822463 10005",
        ] {
            assert!(card_number(written).is_some(), "{written}");
        }
        for not in [
            "4111  1111 1111 1111",
            " 4111 1111 1111 1111",
            "4111 1111 1111 1111-",
            "4111_1111_1111_1111",
            "4111 1111 1111 1112",
            "order 4111 1111 1111 1111",
        ] {
            assert!(card_number(not).is_none(), "{not:?}");
        }
        let tokens = PanTokenizer::new(b"key");
        assert_eq!(
            tokens.tokenize("4111 1111 1111 1111"),
            tokens.tokenize(VISA),
            "one card, one token, however written"
        );
    }

    #[test]
    fn redaction_masks_grouped_card_numbers_in_free_text() {
        assert_eq!(
            redact("card 4111 1111 1111 1111, call 555 0100"),
            "card 4111 11** **** 1111, call 555 0100"
        );
        assert_eq!(
            redact("ref 12 4111-1111-1111-1111"),
            "ref 12 4111-11**-****-1111",
            "a number beside the card's groups does not hide it"
        );
        assert_eq!(redact("2026-03-01 10:00"), "2026-03-01 10:00");
    }
}
