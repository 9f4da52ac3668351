//! Rules: each has an id, a description, a condition over features and event fields, a score
//! weight (log-odds added to the model's) or a hard action, and a reason code. They come from a
//! TOML file ([`RuleSet::parse`]) or, as [`RuleSpec`]s, from the rule sets an admin publishes
//! ([`RuleSet::from_specs`]). A shadow rule is evaluated without acting. See docs/rules.md.

mod condition;
mod expr;

use serde::{Deserialize, Serialize};
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

/// A rule as written: a rules file's `[[rule]]` table, or a rule of a published rule set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub description: String,
    pub when: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<HardAction>,
    pub reason: String,
    /// Evaluated and its hits recorded, but it neither scores nor acts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// The decision a rule may force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HardAction {
    Review,
    Decline,
}

impl HardAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HardAction::Review => "review",
            HardAction::Decline => "decline",
        }
    }
}

/// Where in a condition's text, all from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
    /// Counted from the condition's start, across lines.
    pub character: usize,
}

/// Why a rule cannot be used: the rule, the field at fault and, in a condition, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleError {
    pub rule: String,
    pub field: &'static str,
    pub at: Option<Position>,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule `{}`: ", self.rule)?;
        if let Some(at) = self.at {
            write!(
                f,
                "in `{}`, at line {}, column {}: ",
                self.field, at.line, at.column
            )?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleError {}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub reason: String,
    pub effect: Effect,
    /// The condition as written.
    pub when: String,
    pub shadow: bool,
    /// The line of the rules file it starts on (0 for a rule not from a file).
    pub line: usize,
    condition: Condition,
    reads: Vec<u16>,
}

impl Rule {
    /// Checks and compiles one rule; `line` is where a file has it.
    fn compile(spec: RuleSpec, line: usize) -> std::result::Result<Self, RuleError> {
        let fail = |field: &'static str, at: Option<Position>, message: String| RuleError {
            rule: spec.id.clone(),
            field,
            at,
            message,
        };
        check_name(&spec.id, "id", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
        })
        .map_err(|m| fail("id", None, m))?;
        check_name(&spec.reason, "reason", |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
        })
        .map_err(|m| fail("reason", None, m))?;
        let effect = match (spec.score, spec.action) {
            (Some(s), None) if s.is_finite() && s.abs() <= 100.0 => Effect::Score(s as f32),
            (None, Some(HardAction::Review)) => Effect::Action(Action::Review),
            (None, Some(HardAction::Decline)) => Effect::Action(Action::Decline),
            (Some(_), None) => {
                return Err(fail(
                    "score",
                    None,
                    "score must be a number from -100 to 100".into(),
                ));
            }
            _ => {
                return Err(fail(
                    "score",
                    None,
                    "give either `score` or `action`, not both or neither".into(),
                ));
            }
        };
        let condition = expr::parse(&spec.when).map_err(|e| {
            fail(
                "when",
                Some(position_of(&spec.when, e.at)),
                e.message.clone(),
            )
        })?;
        let mut reads = vec![];
        condition.features_read(&mut reads);
        Ok(Rule {
            condition: Condition::compile(&condition),
            reads,
            id: spec.id,
            description: spec.description,
            reason: spec.reason,
            effect,
            when: spec.when,
            shadow: spec.shadow,
            line,
        })
    }

    /// The features the condition reads, for explanations.
    pub fn features_read(&self) -> &[u16] {
        &self.reads
    }

    /// The rule as written.
    pub fn spec(&self) -> RuleSpec {
        let (score, action) = match self.effect {
            Effect::Score(s) => (Some(f64::from(s)), None),
            Effect::Action(Action::Decline) => (None, Some(HardAction::Decline)),
            Effect::Action(_) => (None, Some(HardAction::Review)),
        };
        RuleSpec {
            id: self.id.clone(),
            description: self.description.clone(),
            when: self.when.clone(),
            score,
            action,
            reason: self.reason.clone(),
            shadow: self.shadow,
        }
    }

    /// Whether the rule holds for `x` and `e`.
    pub fn holds(&self, x: &FeatureVector, e: &Event) -> bool {
        self.condition.eval(x, e)
    }
}

/// What the rules say about one transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleOutcome {
    /// The acting rules that held.
    pub hits: RuleHits,
    /// The shadow rules that held.
    pub shadow_hits: RuleHits,
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
            shadow_hits: RuleHits::default(),
            score: 0.0,
            action: Action::Approve,
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.condition.eval(x, e) {
                continue;
            }
            if rule.shadow {
                outcome.shadow_hits.insert(i);
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

    /// The rules as written, in order.
    pub fn specs(&self) -> Vec<RuleSpec> {
        self.rules.iter().map(Rule::spec).collect()
    }

    /// The rules as a rules file (`vigil backtest --rules` reads it).
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct File {
            rule: Vec<RuleSpec>,
        }
        toml::to_string(&File { rule: self.specs() }).expect("rules serialize as TOML")
    }

    /// Checks and compiles a rule set given rule by rule.
    pub fn from_specs(specs: Vec<RuleSpec>) -> std::result::Result<Self, RuleError> {
        if specs.len() > MAX_RULES {
            return Err(RuleError {
                rule: specs[MAX_RULES].id.clone(),
                field: "id",
                at: None,
                message: format!("{} rules, at most {MAX_RULES} are supported", specs.len()),
            });
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(specs.len());
        for spec in specs {
            if rules.iter().any(|r| r.id == spec.id) {
                return Err(RuleError {
                    rule: spec.id,
                    field: "id",
                    at: None,
                    message: "the id is already used by another rule".into(),
                });
            }
            rules.push(Rule::compile(spec, 0)?);
        }
        Ok(Self { rules })
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
            if let Some(first) = rules.iter().find(|r| r.id == raw.id) {
                return Err(fail(
                    line,
                    format!("the id is already used by the rule on line {}", first.line),
                ));
            }
            let when_line = line_of(source, raw.when.span().start);
            let spec = RuleSpec {
                id: raw.id.clone(),
                description: raw.description,
                when: raw.when.into_inner(),
                score: raw.score,
                action: raw.action,
                reason: raw.reason,
                shadow: raw.shadow,
            };
            let rule = Rule::compile(spec, line).map_err(|e| match e.at {
                Some(at) => fail(
                    when_line,
                    format!("in `when`, at character {}: {}", at.character, e.message),
                ),
                None => fail(line, e.message),
            })?;
            rules.push(rule);
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

/// A [`RuleSpec`] with the spans a file's errors name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    description: String,
    when: Spanned<String>,
    score: Option<f64>,
    action: Option<HardAction>,
    reason: String,
    #[serde(default)]
    shadow: bool,
}

/// The line and column of character `at` (from 0) of `text`.
fn position_of(text: &str, at: usize) -> Position {
    let before: Vec<char> = text.chars().take(at).collect();
    let line = before.iter().filter(|&&c| c == '\n').count() + 1;
    let column = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
    Position {
        line,
        column,
        character: at + 1,
    }
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

    fn spec(id: &str, when: &str) -> RuleSpec {
        RuleSpec {
            id: id.into(),
            description: "a rule".into(),
            when: when.into(),
            score: Some(1.0),
            action: None,
            reason: "A_REASON".into(),
            shadow: false,
        }
    }

    #[test]
    fn a_rule_given_alone_names_the_field_line_and_column() {
        let bad = spec("big", "amount > 100\n  and card_cont_1h > 2");
        let error = RuleSet::from_specs(vec![bad]).unwrap_err();
        assert_eq!(error.field, "when");
        assert_eq!(
            error.at,
            Some(Position {
                line: 2,
                column: 7,
                character: 20
            })
        );
        assert!(
            error
                .to_string()
                .starts_with("rule `big`: in `when`, at line 2, column 7: unknown feature"),
            "{error}"
        );

        let twice = RuleSet::from_specs(vec![spec("a", "amount > 1"), spec("a", "amount > 2")]);
        assert_eq!(twice.unwrap_err().field, "id");
        let mut neither = spec("a", "amount > 1");
        neither.score = None;
        assert_eq!(
            RuleSet::from_specs(vec![neither]).unwrap_err().field,
            "score"
        );
    }

    #[test]
    fn a_shadow_rule_is_recorded_and_never_acts() {
        let mut watched = spec("watched", "amount > 10");
        watched.shadow = true;
        watched.score = None;
        watched.action = Some(HardAction::Decline);
        let rules = RuleSet::from_specs(vec![watched, spec("acting", "amount > 10")]).unwrap();
        let mut x = FeatureVector::default();
        x.0[vigil_models::features::index::AMOUNT] = 50.0;
        let outcome = rules.evaluate(&x, &crate::tests::tx(1, 1, 1, 0, 50));
        assert!(outcome.shadow_hits.contains(0) && !outcome.hits.contains(0));
        assert!(outcome.hits.contains(1));
        assert_eq!((outcome.score, outcome.action), (1.0, Action::Approve));
    }

    #[test]
    fn a_rule_set_written_as_a_file_reads_back_the_same() {
        let rules = RuleSet::default_rules();
        let again = RuleSet::parse(&rules.to_toml(), "exported").unwrap();
        assert_eq!(again.specs(), rules.specs());
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
