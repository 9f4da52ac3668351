//! Decisions and their explanations.

use std::fmt::{self, Write as _};

use vigil_models::features;
use vigil_models::{FeatureVector, ModelScore};
pub use vigil_schema::Action;

use super::rules::{Rule, RuleSet};

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
    /// contributions: `VELOCITY_BURST;card_count_10m:+1.52`. Written into `out` (no allocation
    /// once `out` has grown); needs only the rule set, not the features.
    pub fn write_reasons(&self, rules: &RuleSet, out: &mut String) {
        for i in self.rules.iter() {
            push_separator(out);
            out.push_str(&rules.rules()[i].reason);
        }
        for c in self.model.top.iter().flatten() {
            push_separator(out);
            let _ = write!(
                out,
                "{}:{:+.2}",
                features::name(usize::from(c.feature)),
                c.log_odds
            );
        }
    }
}

fn push_separator(out: &mut String) {
    if !out.is_empty() {
        out.push(';');
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
