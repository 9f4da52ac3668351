//! A rule tested on history: the live rule set and the same set with one draft applied, both
//! evaluated over the feature vectors and event fields the scorer stored with each decision of
//! a period, in one streaming pass (rows are read as Postgres sends them, never all held).
//! Each decision is decided again both ways from the model's stored log-odds under the
//! engine's thresholds, so the report says what the draft adds and removes, not only what it
//! hits. The allow and block lists are not applied. Decisions stored before their model's
//! log-odds were (Vigil before rule sets) are not read.

use std::collections::{BTreeMap, BinaryHeap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use vigil_engine::{Action, EngineConfig, Event, RuleSet};
use vigil_models::{FEATURE_COUNT, FeatureVector};
use vigil_schema::{Channel, Country, Currency, Mcc, Timestamp};

use crate::error::ApiError;

/// The period to test over, by the payments' time; the 30 days before `to` (now when absent)
/// when `from` is absent.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Period {
    const DEFAULT_DAYS: i64 = 30;

    fn bounds(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
        let to = self.to.unwrap_or_else(Utc::now);
        let from = self
            .from
            .unwrap_or_else(|| to - Duration::days(Self::DEFAULT_DAYS));
        if from >= to {
            return Err(ApiError::BadRequest("from: must be before to".into()));
        }
        Ok((from, to))
    }
}

/// How one payment was, or would have been, decided.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Decided {
    pub score: f32,
    #[schema(value_type = String, example = "review")]
    pub decision: &'static str,
}

/// A payment the rule holds for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Hit {
    pub transaction_id: String,
    pub occurred_at: DateTime<Utc>,
    pub amount_minor: i64,
    pub currency: String,
    /// `fraud` or `genuine` where a label says so.
    pub label: Option<&'static str>,
    /// Under the live rule set, and with the draft.
    pub live: Decided,
    pub draft: Decided,
}

/// One day's figures (UTC).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Day {
    pub day: NaiveDate,
    pub decisions: u64,
    pub hits: u64,
    /// Hits labelled fraud, and genuine.
    pub fraud: u64,
    pub genuine: u64,
    /// Hits the rule recorded live that day while it ran in shadow mode.
    pub shadow_hits_recorded: u64,
}

/// What a draft would have done over a period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestReport {
    pub rule_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The version in force, compared against.
    pub live_version: i32,
    /// The draft's revision; absent when the rule has no draft and is tested as it is live.
    pub draft_revision: Option<i32>,
    /// Decisions read.
    pub decisions: u64,
    /// Decisions the rule (as drafted) holds for; for a removal, those the live rule holds for.
    pub hits: u64,
    /// Decisions the live rule holds for (0 for a new rule).
    pub live_hits: u64,
    pub hits_fraud: u64,
    pub hits_genuine: u64,
    /// `hits_fraud / (hits_fraud + hits_genuine)`; absent without labelled hits.
    pub precision: Option<f64>,
    /// Payments that would be alerted (review or decline) with the draft and are not now, and
    /// the other way.
    pub alerts_added: u64,
    pub alerts_removed: u64,
    /// Mean change of the risk score over the hits (draft minus live).
    pub mean_score_shift: f64,
    /// Hits the rule recorded live in the period while running in shadow mode.
    pub shadow_hits_recorded: u64,
    pub days: Vec<Day>,
    /// Up to 20 hits, a sample the same at every run.
    pub sample: Vec<Hit>,
    /// How long the test took.
    pub elapsed_ms: u64,
}

const SAMPLE: usize = 20;

/// The two rule sets compared: the live one and the one with the draft (the same set when
/// the rule is tested as live).
#[derive(Debug)]
pub struct Compared<'a> {
    pub rule_id: &'a str,
    pub live_version: i32,
    pub draft_revision: Option<i32>,
    pub live: &'a RuleSet,
    pub draft: &'a RuleSet,
}

type Row = (
    String,
    DateTime<Utc>,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<u8>,
    f32,
    Option<Vec<String>>,
    Option<bool>,
);

/// Runs the test over `period`.
pub async fn test(
    pool: &PgPool,
    engine: &EngineConfig,
    compared: &Compared<'_>,
    period: &Period,
) -> Result<TestReport, ApiError> {
    let started = Instant::now();
    let (from, to) = period.bounds()?;
    let mut tally = Tally::new(engine, compared);
    let mut rows = sqlx::query_as::<_, Row>(
        "SELECT d.transaction_id, d.occurred_at, d.amount_minor, d.currency, d.country, d.mcc,
             d.channel, d.features, d.model_log_odds, d.shadow_rules, l.is_fraud
         FROM decisions d
         LEFT JOIN (SELECT transaction_id, bool_or(is_fraud) AS is_fraud FROM labels
                    GROUP BY transaction_id) l USING (transaction_id)
         WHERE d.occurred_at >= $1 AND d.occurred_at < $2 AND d.model_log_odds IS NOT NULL",
    )
    .bind(from)
    .bind(to)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        tally.add(row);
    }
    Ok(tally.report(from, to, started))
}

/// The figures as the rows go by.
struct Tally<'a> {
    engine: &'a EngineConfig,
    compared: &'a Compared<'a>,
    /// The rule's position in the live set and in the draft's.
    in_live: Option<usize>,
    in_draft: Option<usize>,
    decisions: u64,
    hits: u64,
    live_hits: u64,
    hits_fraud: u64,
    hits_genuine: u64,
    alerts_added: u64,
    alerts_removed: u64,
    score_shift: f64,
    shadow_hits_recorded: u64,
    days: BTreeMap<NaiveDate, Day>,
    /// The hits of the smallest hashes of their ids: a sample that does not depend on order.
    sample: BinaryHeap<(u64, SampledHit)>,
}

#[derive(Debug)]
struct SampledHit(Hit);

impl PartialEq for SampledHit {
    fn eq(&self, other: &Self) -> bool {
        self.0.transaction_id == other.0.transaction_id
    }
}
impl Eq for SampledHit {}
impl PartialOrd for SampledHit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SampledHit {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.transaction_id.cmp(&other.0.transaction_id)
    }
}

impl<'a> Tally<'a> {
    fn new(engine: &'a EngineConfig, compared: &'a Compared<'a>) -> Self {
        let position =
            |rules: &RuleSet| rules.rules().iter().position(|r| r.id == compared.rule_id);
        Self {
            engine,
            compared,
            in_live: position(compared.live),
            in_draft: position(compared.draft),
            decisions: 0,
            hits: 0,
            live_hits: 0,
            hits_fraud: 0,
            hits_genuine: 0,
            alerts_added: 0,
            alerts_removed: 0,
            score_shift: 0.0,
            shadow_hits_recorded: 0,
            days: BTreeMap::new(),
            sample: BinaryHeap::new(),
        }
    }

    fn add(&mut self, row: Row) {
        let (id, at, amount, currency, country, mcc, channel, features, logit, shadow, label) = row;
        let Some((x, e)) = inputs(&features, at, amount, &currency, country, mcc, channel) else {
            return;
        };
        self.decisions += 1;
        let day = self.days.entry(at.date_naive()).or_insert_with(|| Day {
            day: at.date_naive(),
            ..Day::default()
        });
        day.decisions += 1;
        if shadow.is_some_and(|ids| ids.iter().any(|r| r == self.compared.rule_id)) {
            self.shadow_hits_recorded += 1;
            day.shadow_hits_recorded += 1;
        }
        let live = self.compared.live.evaluate(&x, &e);
        let draft = self.compared.draft.evaluate(&x, &e);
        let held =
            |hits: vigil_engine::RuleHits, shadow: vigil_engine::RuleHits, at: Option<usize>| {
                at.is_some_and(|i| hits.contains(i) || shadow.contains(i))
            };
        let live_hit = held(live.hits, live.shadow_hits, self.in_live);
        let draft_hit = held(draft.hits, draft.shadow_hits, self.in_draft);
        self.live_hits += u64::from(live_hit);
        let live = decided(self.engine, logit, live.score, live.action);
        let draft = decided(self.engine, logit, draft.score, draft.action);
        let alerted = |d: &Decided| d.decision != Action::Approve.as_str();
        self.alerts_added += u64::from(alerted(&draft) && !alerted(&live));
        self.alerts_removed += u64::from(alerted(&live) && !alerted(&draft));
        let hit = if self.in_draft.is_some() {
            draft_hit
        } else {
            live_hit
        };
        if !hit {
            return;
        }
        self.hits += 1;
        day.hits += 1;
        self.score_shift += f64::from(draft.score - live.score);
        match label {
            Some(true) => {
                self.hits_fraud += 1;
                day.fraud += 1;
            }
            Some(false) => {
                self.hits_genuine += 1;
                day.genuine += 1;
            }
            None => {}
        }
        let key = {
            let mut hasher = DefaultHasher::new();
            id.hash(&mut hasher);
            hasher.finish()
        };
        if self.sample.len() == SAMPLE && self.sample.peek().is_some_and(|(k, _)| *k <= key) {
            return;
        }
        self.sample.push((
            key,
            SampledHit(Hit {
                transaction_id: id,
                occurred_at: at,
                amount_minor: amount,
                currency,
                label: label.map(|f| if f { "fraud" } else { "genuine" }),
                live,
                draft,
            }),
        ));
        if self.sample.len() > SAMPLE {
            self.sample.pop();
        }
    }

    fn report(self, from: DateTime<Utc>, to: DateTime<Utc>, started: Instant) -> TestReport {
        let labelled = self.hits_fraud + self.hits_genuine;
        let mut sample: Vec<Hit> = self.sample.into_iter().map(|(_, h)| h.0).collect();
        sample.sort_by_key(|h| h.occurred_at);
        TestReport {
            rule_id: self.compared.rule_id.to_owned(),
            from,
            to,
            live_version: self.compared.live_version,
            draft_revision: self.compared.draft_revision,
            decisions: self.decisions,
            hits: self.hits,
            live_hits: self.live_hits,
            hits_fraud: self.hits_fraud,
            hits_genuine: self.hits_genuine,
            precision: (labelled > 0).then(|| self.hits_fraud as f64 / labelled as f64),
            alerts_added: self.alerts_added,
            alerts_removed: self.alerts_removed,
            mean_score_shift: if self.hits == 0 {
                0.0
            } else {
                self.score_shift / self.hits as f64
            },
            shadow_hits_recorded: self.shadow_hits_recorded,
            days: self.days.into_values().collect(),
            sample,
            elapsed_ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// The feature vector and the event as the scorer had them; `None` for a vector of another
/// layout (stored by another version of Vigil).
fn inputs(
    features: &[u8],
    at: DateTime<Utc>,
    amount: i64,
    currency: &str,
    country: Option<String>,
    mcc: Option<String>,
    channel: Option<String>,
) -> Option<(FeatureVector, Event)> {
    if features.len() != FEATURE_COUNT * 4 {
        return None;
    }
    let mut x = FeatureVector::default();
    for (value, bytes) in x.0.iter_mut().zip(features.chunks_exact(4)) {
        *value = f32::from_le_bytes(bytes.try_into().expect("chunks of 4"));
    }
    let event = Event {
        transaction: 0,
        occurred_at: Timestamp::from_unix_millis(at.timestamp_millis(), 0).ok()?,
        card: 0,
        customer: None,
        merchant: 0,
        device: None,
        amount_minor: u64::try_from(amount).ok()?,
        currency: Currency::parse(currency).ok()?,
        country: country.and_then(|c| Country::parse(&c).ok()),
        mcc: mcc.and_then(|m| Mcc::parse(&m).ok()),
        channel: channel.and_then(|c| Channel::parse(&c).ok()),
        geo: None,
    };
    Some((x, event))
}

fn decided(engine: &EngineConfig, logit: f32, rule_log_odds: f32, action: Action) -> Decided {
    let (score, action) = vigil_engine::decide(engine, f64::from(logit), rule_log_odds, action);
    Decided {
        score,
        decision: action.as_str(),
    }
}

/// Tests the draft of `rule_id` (or, without one, the live rule as it is) over `period`.
pub async fn test_rule(
    pool: &PgPool,
    engine: &EngineConfig,
    rule_id: &str,
    period: &Period,
) -> Result<TestReport, ApiError> {
    let mut db = pool.acquire().await?;
    let live = super::book::live(&mut db).await?;
    let drafted = super::book::draft(&mut db, rule_id).await?;
    drop(db);
    if drafted.is_none() && live.rule(rule_id).is_none() {
        return Err(ApiError::NotFound(format!(
            "no rule `{rule_id}`, live or drafted"
        )));
    }
    let live_rules = live.rule_set()?;
    let draft_rules = match &drafted {
        Some(d) => {
            super::book::compile(&super::book::applied(&live.rules, rule_id, d.rule.as_ref()))?
        }
        None => live_rules.clone(),
    };
    let compared = Compared {
        rule_id,
        live_version: live.version,
        draft_revision: drafted.map(|d| d.revision),
        live: &live_rules,
        draft: &draft_rules,
    };
    test(pool, engine, &compared, period).await
}
