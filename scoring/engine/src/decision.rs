//! Decisions and their explanations.

use std::fmt::{self, Write as _};

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};
use vigil_models::features::{self, CARD_HORIZONS, index};
use vigil_models::{FeatureVector, ModelScore};
pub use vigil_schema::Action;

use super::rules::{Effect, Rule, RuleSet};

/// The set of rules (by position in the rule set) that held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RuleHits(u64);

impl RuleHits {
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }

    pub fn contains(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |&i| self.contains(i))
    }
}

/// How the transaction's own data was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Scored and added to the windows.
    Applied,
    /// Later than the allowed lateness: scored against the state as it stands, not added.
    Late,
    /// A transaction id already scored: scored again, not added twice.
    Duplicate,
}

/// The engine's verdict on one transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Risk of fraud in [0, 1]: the model's log-odds plus the rule scores.
    pub score: f32,
    pub action: Action,
    pub model: ModelScore,
    pub rules: RuleHits,
    /// The shadow rules that held: recorded, never acted on.
    pub shadow_rules: RuleHits,
    /// The log-odds the rules that held added, and the hardest action they asked for.
    pub rule_log_odds: f32,
    pub rule_action: Action,
    pub disposition: Disposition,
}

/// A decision with what it needs to say why: the rule set and the features it was made from.
#[derive(Debug, Clone, Copy)]
pub struct Explanation<'a> {
    pub decision: &'a Decision,
    pub features: &'a FeatureVector,
    pub rules: &'a RuleSet,
}

impl<'a> Explanation<'a> {
    pub fn rule_hits(&self) -> impl Iterator<Item = &'a Rule> + 'a {
        let rules = self.rules;
        self.decision.rules.iter().map(move |i| &rules.rules()[i])
    }

    /// The top model contributions: feature name, log-odds added, the feature's value.
    pub fn top_features(&self) -> impl Iterator<Item = (&'static str, f32, Option<f32>)> + 'a {
        let features = self.features;
        self.decision.model.top.into_iter().flatten().map(move |c| {
            let i = usize::from(c.feature);
            (features::name(i), c.log_odds, features.get(i))
        })
    }
}

impl Decision {
    /// Reason codes of the rules that held, then the top model features with their
    /// contributions: `VELOCITY_BURST;card_count_10m:+1.52`. Appended to `out` (no allocation
    /// once `out` has grown), after a `;` when `out` already holds reasons of its own; needs
    /// only the rule set, not the features.
    pub fn write_reasons(&self, rules: &RuleSet, out: &mut String, mut separate: bool) {
        let mut separator = |out: &mut String| {
            if separate {
                out.push(';');
            }
            separate = true;
        };
        for i in self.rules.iter() {
            separator(out);
            out.push_str(&rules.rules()[i].reason);
        }
        for c in self.model.top.iter().flatten() {
            separator(out);
            let _ = write!(
                out,
                "{}:{:+.2}",
                features::name(usize::from(c.feature)),
                c.log_odds
            );
        }
    }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (score {:.3})",
            self.decision.action.as_str(),
            self.decision.score
        )?;
        for rule in self.rule_hits() {
            write!(
                f,
                "\n  rule {} [{}]: {}",
                rule.id, rule.reason, rule.description
            )?;
            for &i in rule.features_read() {
                match self.features.get(usize::from(i)) {
                    Some(v) => write!(f, "; {}={v}", features::name(usize::from(i)))?,
                    None => write!(f, "; {}=missing", features::name(usize::from(i)))?,
                }
            }
        }
        for (name, log_odds, value) in self.top_features() {
            let value = value.map_or_else(|| "missing".to_owned(), |v| v.to_string());
            write!(f, "\n  model: {name}={value} adds {log_odds:+.2} log-odds")?;
        }
        Ok(())
    }
}

/// The explanation as investigators read it (stored with each alert):
/// `{"score", "decision", "rules": [{"id", "reason", "description", "when" (the condition as
/// written), "score" | "action", "values": {feature: value | null}}], "model": [{"feature", "log_odds", "value"}],
/// "comparisons": ["amount is 7.3x this card's 30-day average", ...]}`.
impl Serialize for Explanation<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Explanation", 5)?;
        s.serialize_field("score", &self.decision.score)?;
        s.serialize_field("decision", &self.decision.action)?;
        let rules: Vec<RuleHit<'_>> = self
            .rule_hits()
            .map(|rule| RuleHit {
                rule,
                features: self.features,
            })
            .collect();
        s.serialize_field("rules", &rules)?;
        let model: Vec<Contribution> = self
            .top_features()
            .map(|(feature, log_odds, value)| Contribution {
                feature,
                log_odds,
                value,
            })
            .collect();
        s.serialize_field("model", &model)?;
        s.serialize_field("comparisons", &comparisons(self.features))?;
        s.end()
    }
}

struct RuleHit<'a> {
    rule: &'a Rule,
    features: &'a FeatureVector,
}

impl Serialize for RuleHit<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RuleHit", 6)?;
        s.serialize_field("id", &self.rule.id)?;
        s.serialize_field("reason", &self.rule.reason)?;
        s.serialize_field("description", &self.rule.description)?;
        s.serialize_field("when", &self.rule.when)?;
        match self.rule.effect {
            Effect::Score(score) => s.serialize_field("score", &score)?,
            Effect::Action(action) => s.serialize_field("action", &action)?,
        }
        s.serialize_field(
            "values",
            &ValuesRead {
                reads: self.rule.features_read(),
                features: self.features,
            },
        )?;
        s.end()
    }
}

/// The features a rule read, by name, `null` where missing.
struct ValuesRead<'a> {
    reads: &'a [u16],
    features: &'a FeatureVector,
}

impl Serialize for ValuesRead<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.reads.len()))?;
        for &i in self.reads {
            let i = usize::from(i);
            map.serialize_entry(features::name(i), &self.features.get(i))?;
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
struct Contribution {
    feature: &'static str,
    log_odds: f32,
    value: Option<f32>,
}

/// Plain-language comparisons an investigator reads at a glance, for the features that stand
/// out; missing features say nothing.
pub fn comparisons(features: &FeatureVector) -> Vec<String> {
    let get = |i: usize| features.get(i);
    let card_count = |h: usize| get(index::window(index::CARD_WINDOWS, h, 0));
    let mut out = vec![];
    if let Some(ratio) = get(index::CARD_AMOUNT_RATIO_30D).filter(|&r| r >= 2.0) {
        out.push(format!("amount is {ratio:.1}x this card's 30-day average"));
    }
    if let Some(z) = get(index::CARD_AMOUNT_ZSCORE_30D).filter(|&z| z >= 3.0) {
        out.push(format!(
            "amount is {z:.1} standard deviations above this card's 30-day mean"
        ));
    }
    for (h, floor) in [(0, 3.0), (1, 5.0)] {
        if let Some(n) = card_count(h).filter(|&n| n >= floor) {
            let horizon = CARD_HORIZONS[h].name;
            out.push(format!(
                "{n:.0} earlier transactions on this card in the last {horizon}"
            ));
        }
    }
    if let Some(n) = get(index::CARD_DISTINCT_MERCHANTS_1H).filter(|&n| n >= 3.0) {
        out.push(format!("card used at {n:.0} merchants in the last hour"));
    }
    if let (Some(km), Some(kmh)) = (get(index::CARD_TRAVEL_KM), get(index::CARD_TRAVEL_KMH))
        && km >= 100.0
        && kmh >= 500.0
    {
        out.push(format!(
            "{km:.0} km from the card's previous position, at {kmh:.0} km/h"
        ));
    }
    if get(index::CARD_NEW_COUNTRY) == Some(1.0) {
        out.push("first transaction from this country on this card in 30 days".into());
    }
    if get(index::CARD_NEW_DEVICE) == Some(1.0) {
        out.push("first use of this device on this card in 30 days".into());
    }
    if let Some(n) = get(index::MERCHANT_FRAUD_COUNT_30D).filter(|&n| n >= 1.0) {
        let rate = get(index::MERCHANT_FRAUD_RATE_30D).unwrap_or(0.0) * 100.0;
        out.push(format!(
            "merchant has {n:.0} confirmed frauds in the last 30 days ({rate:.1}% of its sales)"
        ));
    }
    if let Some(s) = get(index::CARD_SECONDS_SINCE_PREVIOUS).filter(|&s| s < 60.0) {
        out.push(format!("{s:.0} s after the card's previous transaction"));
    }
    out
}
