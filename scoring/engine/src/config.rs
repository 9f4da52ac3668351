//! The engine's typed configuration (the `[engine]` table of `vigil.toml`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vigil_models::OnlineConfig;

use super::RetrainConfig;
use crate::{Error, Result};

/// A length of time written as a number and a unit: `90s`, `10m`, `1h`, `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(i64);

impl Span {
    pub const fn seconds(n: i64) -> Self {
        Self(n)
    }

    pub const fn days(n: i64) -> Self {
        Self(n * 86_400)
    }

    pub fn as_seconds(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let error = || format!("`{text}` is not a length of time such as 90s, 10m, 1h or 30d");
        let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
        let n: i64 = text[..unit_at].parse().map_err(|_| error())?;
        let unit = match &text[unit_at..] {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(error()),
        };
        n.checked_mul(unit).map(Self).ok_or_else(error)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// When a transaction that got no fraud label is learned as genuine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImplicitGenuine {
    /// For transactions maturing before the first explicit genuine label (explicit labels are
    /// better).
    Auto,
    Always,
    Never,
}

/// How the engine scores, decides and learns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Scores at or above this go to review.
    pub review_threshold: f64,
    /// Scores at or above this are declined.
    pub decline_threshold: f64,
    /// How far behind the newest event time a transaction may arrive and still update the
    /// windows. Later ones are scored against the state as it is, counted, and not added.
    pub allowed_lateness: Span,
    /// How long a scored transaction's feature vector waits for its label.
    pub label_horizon: Span,
    /// At most this many feature vectors wait for labels in a partition (about 360 bytes
    /// each); the oldest go first when it is reached. At most 1,000,000,000.
    pub max_pending_labels: usize,
    /// Transactions of cards new to a partition keep their feature vectors for labels up to
    /// this many an hour of event time (a budget that holds an hour's worth and refills
    /// evenly). Beyond it, in a flood of new cards, they are scored and decided as usual but
    /// keep no vector, so that the flood cannot push out vectors still waiting for
    /// chargebacks. 0: no budget.
    pub new_card_vectors_per_hour: u32,
    /// At most this many cards in a partition, and customers and merchants each in the state
    /// the partitions share (about 1 KiB each); a new one then takes the place of one seen
    /// long ago.
    pub max_keys: usize,
    /// Whether transactions without a fraud label are learned as genuine after `maturity`.
    pub implicit_genuine: ImplicitGenuine,
    /// How long after a transaction, without a fraud label, it is taken as genuine. Short enough
    /// that the model sees genuine examples early; a chargeback that comes later still teaches
    /// it the fraud.
    pub maturity: Span,
    /// Cards, customers and merchants idle for longer are forgotten.
    pub idle_key_ttl: Span,
    /// How often, in event time, what each partition's engine learned of the state they all
    /// share (the online model's examples; the merchants' sales and confirmed frauds) is
    /// pooled, whatever partition saw it.
    pub share_every: Span,
    /// How long after the end of a pooled stretch of event time its state is scored with: the
    /// time a live service has to gather every partition's records. Merchant windows and the
    /// model lag the stream by at most `share_every` + `share_delay`.
    pub share_delay: Span,
    /// Whether the online model learns from labels. Off, the champion (or the prior) scores
    /// alone: for comparing the two in a backtest.
    pub learn_online: bool,
    /// The online model's hyper-parameters.
    pub model: OnlineConfig,
    /// When the engine trains a champion of its own from the vectors it keeps.
    pub retrain: RetrainConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            review_threshold: 0.5,
            decline_threshold: 0.9,
            allowed_lateness: Span::seconds(3_600),
            label_horizon: Span::days(120),
            max_pending_labels: 2_000_000,
            new_card_vectors_per_hour: 100_000,
            max_keys: 1_000_000,
            implicit_genuine: ImplicitGenuine::Auto,
            maturity: Span::days(7),
            idle_key_ttl: Span::days(35),
            share_every: Span::seconds(5),
            share_delay: Span::seconds(5),
            learn_online: true,
            model: OnlineConfig::default(),
            retrain: RetrainConfig::default(),
        }
    }
}

impl EngineConfig {
    pub fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::Config(m.to_owned()));
        if !(0.0..=1.0).contains(&self.review_threshold)
            || !(0.0..=1.0).contains(&self.decline_threshold)
        {
            return fail("review_threshold and decline_threshold must be in [0, 1]");
        }
        if self.review_threshold > self.decline_threshold {
            return fail("review_threshold must not be above decline_threshold");
        }
        if self.maturity > self.label_horizon {
            return fail("maturity must not be longer than label_horizon");
        }
        if self.idle_key_ttl.as_seconds() < 30 * 86_400 {
            return fail("idle_key_ttl must be at least 30d, the longest window");
        }
        if self.share_every.as_seconds() < 1 {
            return fail("share_every must be at least 1s");
        }
        // The index of pending transactions holds 32 bits of each one's place.
        if self.max_pending_labels > 1_000_000_000 {
            return fail("max_pending_labels must be at most 1000000000");
        }
        if self.max_keys == 0 {
            return fail("max_keys must be at least 1");
        }
        self.model.validate()?;
        self.retrain.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(Span::parse("90s"), Ok(Span::seconds(90)));
        assert_eq!(Span::parse("10m").unwrap().as_seconds(), 600);
        assert_eq!(Span::parse("30d"), Ok(Span::days(30)));
        assert!(Span::parse("10").is_err());
        assert!(Span::parse("1w").is_err());
        assert!(Span::parse("-5m").is_err());
        assert_eq!(Span::days(2).to_string(), "2d");
        assert_eq!(Span::seconds(5400).to_string(), "90m");
    }

    #[test]
    fn config_is_checked() {
        assert!(EngineConfig::default().validate().is_ok());
        let bad = EngineConfig {
            review_threshold: 0.95,
            ..EngineConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = EngineConfig {
            idle_key_ttl: Span::days(7),
            ..EngineConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = EngineConfig {
            max_pending_labels: 5_000_000_000,
            ..EngineConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
