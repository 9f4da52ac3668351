//! Rules from a TOML file: each has an id, a description, a condition over features and event
//! fields, a score weight (log-odds added to the model's) or a hard action, and a reason code.
//! See docs/rules.md.

mod condition;
mod expr;

use serde::Deserialize;
use toml::Spanned;
use vigil_models::FeatureVector;

use super::decision::{Action, RuleHits};
use super::event::Event;
use crate::{Error, Result};
use condition::Condition;

/// At most this many rules: hits are a 64-bit set.
pub const MAX_RULES: usize = 64;

/// What a rule does when it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Log-odds added to the model's.
    Score(f32),
    /// A decision at least this severe, whatever the score.
    Action(Action),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub reason: String,
    pub effect: Effect,
    /// The condition as written.
    pub when: String,
    /// The line of the rules file it starts on.
    pub line: usize,
    condition: Condition,
    reads: Vec<u16>,
}

impl Rule {
    /// The features the condition reads, for explanations.
    pub fn features_read(&self) -> &[u16] {
        &self.reads
    }
}

/// What the rules say about one transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleOutcome {
    pub hits: RuleHits,
    pub score: f32,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

const DEFAULT_RULES: &str = include_str!("../../../rules/default.toml");

impl RuleSet {
    /// The rule set Vigil ships with (`scoring/rules/default.toml`).
    pub fn default_rules() -> Self {
        Self::parse(DEFAULT_RULES, "default rules").expect("the shipped rules are valid")
    }

    pub fn empty() -> Self {
        Self { rules: vec![] }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn evaluate(&self, x: &FeatureVector, e: &Event) -> RuleOutcome {
        let mut outcome = RuleOutcome {
            hits: RuleHits::default(),
            score: 0.0,
            action: Action::Approve,
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.condition.eval(x, e) {
                continue;
            }
            outcome.hits.insert(i);
            match rule.effect {
                Effect::Score(s) => outcome.score += s,
                Effect::Action(a) => outcome.action = outcome.action.max(a),
            }
        }
        outcome
    }

    /// Parses a rules file; `origin` (its path) starts every error message, with the line.
    pub fn parse(source: &str, origin: &str) -> Result<Self> {
        let file: RulesFile = toml::from_str(source).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let rule = enclosing_rule_id(source, at)
                .map(|id| format!("rule `{id}`: "))
                .unwrap_or_default();
            Error::Rules(format!(
                "{origin}:{}: {rule}{}",
                line_of(source, at),
                e.message().trim_end()
            ))
        })?;
        if file.rule.len() > MAX_RULES {
            return Err(Error::Rules(format!(
                "{origin}: {} rules, at most {MAX_RULES} are supported",
                file.rule.len()
            )));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rule.len());
        for raw in file.rule {
            let line = line_of(source, raw.span().start);
            let raw = raw.into_inner();
            let fail = |line: usize, message: String| {
                Error::Rules(format!("{origin}:{line}: rule `{}`: {message}", raw.id))
            };
            check_name(&raw.id, "id", |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
            })
            .map_err(|m| fail(line, m))?;
            check_name(&raw.reason, "reason", |c| {
                c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
            })
            .map_err(|m| fail(line, m))?;
            if let Some(first) = rules.iter().find(|r| r.id == raw.id) {
                return Err(fail(
                    line,
                    format!("the id is already used by the rule on line {}", first.line),
                ));
            }
            let effect = match (raw.score, raw.action) {
                (Some(s), None) if s.is_finite() => Effect::Score(s as f32),
                (None, Some(HardAction::Review)) => Effect::Action(Action::Review),
                (None, Some(HardAction::Decline)) => Effect::Action(Action::Decline),
                (Some(_), None) => return Err(fail(line, "score must be a finite number".into())),
                _ => {
                    return Err(fail(
                        line,
                        "give either `score` or `action`, not both or neither".into(),
                    ));
                }
            };
            let when_line = line_of(source, raw.when.span().start);
            let condition = expr::parse(raw.when.get_ref()).map_err(|e| {
                fail(
                    when_line,
                    format!("in `when`, at character {}: {}", e.at + 1, e.message),
                )
            })?;
            let mut reads = vec![];
            condition.features_read(&mut reads);
            rules.push(Rule {
                id: raw.id,
                description: raw.description,
                reason: raw.reason,
                effect,
                when: raw.when.into_inner(),
                line,
                condition: Condition::compile(&condition),
                reads,
            });
        }
        Ok(Self { rules })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    description: String,
    when: Spanned<String>,
    score: Option<f64>,
    action: Option<HardAction>,
    reason: String,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum HardAction {
    Review,
    Decline,
}

fn check_name(value: &str, what: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if value.is_empty() || !value.chars().all(allowed) {
        let form = if what == "id" {
            "lower_snake_case"
        } else {
            "UPPER_SNAKE_CASE"
        };
        return Err(format!("{what} `{value}` must be non-empty {form}"));
    }
    Ok(())
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// The id of the `[[rule]]` table around byte `offset`, when the file is valid TOML.
fn enclosing_rule_id(source: &str, offset: usize) -> Option<String> {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        rule: Vec<Spanned<toml::Table>>,
    }
    let loose: Loose = toml::from_str(source).ok()?;
    let table = loose.rule.iter().rev().find(|t| t.span().start <= offset)?;
    table.get_ref().get("id")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(source: &str) -> String {
        RuleSet::parse(source, "rules.toml")
            .unwrap_err()
            .to_string()
    }

    const GOOD: &str = r#"
[[rule]]
id = "big"
description = "A big amount"
when = "amount > 100000"
score = 1.5
reason = "BIG_AMOUNT"

[[rule]]
id = "burst"
description = "Many in ten minutes"
when = "card_count_10m >= 5"
action = "review"
reason = "VELOCITY"
"#;

    #[test]
    fn loads_rules_with_their_lines() {
        let rules = RuleSet::parse(GOOD, "rules.toml").unwrap();
        assert_eq!(rules.rules().len(), 2);
        assert_eq!(rules.rules()[0].line, 2);
        assert_eq!(rules.rules()[1].effect, Effect::Action(Action::Review));
        assert_eq!(rules.rules()[1].line, 9);
    }

    #[test]
    fn a_bad_condition_names_the_rule_and_line() {
        let bad = GOOD.replace("card_count_10m >= 5", "card_count_10m >= ");
        assert_eq!(
            error(&bad),
            "rules.toml:12: rule `burst`: in `when`, at character 19: expected a number or a feature, found the end of the condition"
        );
        let bad = GOOD.replace("amount > 100000", "amont > 100000");
        assert!(
            error(&bad).starts_with(
                "rules.toml:5: rule `big`: in `when`, at character 1: unknown feature"
            ),
            "{}",
            error(&bad)
        );
    }

    #[test]
    fn structural_errors_name_the_line_and_rule() {
        let bad = GOOD.replace("score = 1.5", "score = 1.5\nweight = 2");
        let message = error(&bad);
        assert!(
            message.starts_with("rules.toml:7: rule `big`: unknown field `weight`"),
            "{message}"
        );

        let bad = GOOD.replace("action = \"review\"", "action = \"approve\"");
        let message = error(&bad);
        assert!(
            message.starts_with("rules.toml:13: rule `burst`: unknown variant `approve`"),
            "{message}"
        );

        let bad = GOOD.replace("score = 1.5", "score = 1.5\naction = \"decline\"");
        assert_eq!(
            error(&bad),
            "rules.toml:2: rule `big`: give either `score` or `action`, not both or neither"
        );

        let bad = GOOD.replace("id = \"burst\"", "id = \"big\"");
        assert_eq!(
            error(&bad),
            "rules.toml:9: rule `big`: the id is already used by the rule on line 2"
        );

        let bad = GOOD.replace("reason = \"VELOCITY\"", "reason = \"velocity\"");
        assert!(error(&bad).starts_with("rules.toml:9: rule `burst`: reason `velocity`"));

        let bad = GOOD.replace("[[rule]]\nid = \"burst\"", "[[rule]\nid = \"burst\"");
        assert!(error(&bad).starts_with("rules.toml:9: "), "{}", error(&bad));
    }

    /// docs/rules.md names every feature a rule can read (window features by their pattern).
    #[test]
    fn the_rules_guide_lists_every_feature() {
        let guide = include_str!("../../../../docs/rules.md");
        for spec in vigil_models::features::specs() {
            let name = spec.name.as_str();
            let pattern = ["card", "customer", "merchant"]
                .into_iter()
                .find(|e| {
                    vigil_models::features::WINDOW_STATS
                        .iter()
                        .any(|s| name.starts_with(&format!("{e}_{s}_")))
                })
                .map(|e| format!("`{e}_{{stat}}_{{h}}`"));
            let documented =
                guide.contains(&format!("`{name}`")) || pattern.is_some_and(|p| guide.contains(&p));
            assert!(documented, "docs/rules.md does not describe `{name}`");
        }
    }

    #[test]
    fn the_default_rules_load() {
        let rules = RuleSet::default_rules();
        let ids: Vec<&str> = rules.rules().iter().map(|r| r.id.as_str()).collect();
        for expected in [
            "amount_far_above_norm",
            "velocity_burst",
            "card_testing",
            "impossible_travel",
            "merchant_recent_frauds",
            "high_amount_new_country_or_device",
        ] {
            assert!(ids.contains(&expected), "{expected} missing from {ids:?}");
        }
    }
}
