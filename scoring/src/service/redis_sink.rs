//! Redis, written after each commit: each card's latest risk, the recent alerts (overall and per
//! card) and a live channel of new alerts. Every write is idempotent (a hash set, a sorted-set
//! add), so writing a batch again is harmless. When Redis fails, decisions still commit; the
//! sink remembers since when it is stale and, once Redis answers again, rebuilds what it missed
//! from Postgres.
//!
//! The keys: [`vigil_schema::redis_keys`].

use std::time::{Duration, SystemTime};

use futures_util::TryStreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use vigil_schema::redis_keys;

use super::config::ServiceConfig;
use super::replies::Replier;
use super::rows::Decisions;
use super::store::Store;

/// One decision as Redis keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct CardRisk<'a> {
    pub transaction_id: &'a str,
    pub card_id: &'a str,
    pub merchant_id: &'a str,
    pub score: f32,
    pub decision: &'a str,
    pub occurred_at_ms: i64,
    pub reasons: &'a str,
}

pub struct RedisSink {
    connection: ConnectionManager,
    prefix: String,
    recent_alerts: isize,
    recent_alerts_per_card: isize,
    card_risk_ttl: i64,
    /// When writes started failing; what was decided since must be rebuilt from Postgres.
    stale_since: Option<SystemTime>,
    last_rebuild_attempt: Option<std::time::Instant>,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("prefix", &self.prefix)
            .field("stale_since", &self.stale_since)
            .finish_non_exhaustive()
    }
}

/// Rows written in one pipeline when rebuilding.
const REBUILD_CHUNK: usize = 5000;

impl RedisSink {
    /// A sink that connects on first use, so that a service starts while Redis is down.
    pub fn new(url: &str, prefix: &str, config: &ServiceConfig) -> redis::RedisResult<Self> {
        let client = vigil_common::redis::client(url)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1);
        Ok(Self {
            connection: client.get_connection_manager_lazy(manager)?,
            prefix: prefix.to_owned(),
            recent_alerts: config.recent_alerts as isize,
            recent_alerts_per_card: config.recent_alerts_per_card as isize,
            card_risk_ttl: config.card_risk_ttl_secs as i64,
            stale_since: None,
            last_rebuild_attempt: None,
        })
    }

    /// What publishes replies to waiting intakes, on this sink's connection.
    pub fn replier(&self) -> Replier {
        Replier::new(self.connection.clone(), &self.prefix)
    }

    /// Rebuilds what Redis missed, if it is stale and the last attempt was over a second ago;
    /// between batches too, so that Redis heals on a quiet stream. Returns whether Redis is up
    /// to date.
    pub async fn heal(&mut self, store: &Store) -> bool {
        let Some(since) = self.stale_since else {
            return true;
        };
        if self
            .last_rebuild_attempt
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return false;
        }
        self.last_rebuild_attempt = Some(std::time::Instant::now());
        match self.rebuild(store, since).await {
            Ok(n) => {
                tracing::info!(decisions = n, "redis is back: rebuilt from postgres");
                self.stale_since = None;
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis still unavailable");
                false
            }
        }
    }

    /// Writes a committed batch's decisions (those of each lane) in one pipeline; on failure
    /// remembers to rebuild. Returns whether Redis is up to date.
    pub async fn write(&mut self, lanes: &[&Decisions], store: &Store) -> bool {
        let written_at = SystemTime::now();
        if self.stale_since.is_some() {
            // The rebuild covers this batch, committed already.
            self.last_rebuild_attempt = None;
            return self.heal(store).await;
        }
        if lanes.iter().all(|d| d.is_empty()) {
            return true;
        }
        let risks = lanes.iter().flat_map(|decisions| {
            (0..decisions.len()).map(|i| CardRisk {
                transaction_id: decisions.transaction_id.get(i),
                card_id: decisions.card_id.get(i),
                merchant_id: decisions.merchant_id.get(i),
                score: decisions.score[i],
                decision: decisions.action[i].as_str(),
                occurred_at_ms: decisions.occurred_at[i].unix_millis(),
                reasons: decisions.reasons.get(i),
            })
        });
        match self.write_risks(risks, true).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "redis write failed; it will be rebuilt from postgres");
                self.stale_since = Some(written_at);
                false
            }
        }
    }

    async fn write_risks<'a>(
        &mut self,
        risks: impl Iterator<Item = CardRisk<'a>>,
        publish: bool,
    ) -> redis::RedisResult<()> {
        let p = &self.prefix;
        let mut pipe = redis::pipe();
        let mut any_alert = false;
        for r in risks {
            let card = redis_keys::card(p, r.card_id);
            pipe.hset_multiple(
                &card,
                &[
                    ("score", r.score.to_string()),
                    ("decision", r.decision.to_owned()),
                    ("transaction_id", r.transaction_id.to_owned()),
                    ("occurred_at", r.occurred_at_ms.to_string()),
                ],
            )
            .ignore()
            .expire(&card, self.card_risk_ttl)
            .ignore();
            if r.decision == "approve" {
                continue;
            }
            any_alert = true;
            let card_alerts = redis_keys::card_alerts(p, r.card_id);
            pipe.zadd(&card_alerts, r.transaction_id, r.occurred_at_ms)
                .ignore()
                .zremrangebyrank(&card_alerts, 0, -self.recent_alerts_per_card - 1)
                .ignore()
                .expire(&card_alerts, self.card_risk_ttl)
                .ignore()
                .zadd(
                    redis_keys::recent_alerts(p),
                    r.transaction_id,
                    r.occurred_at_ms,
                )
                .ignore();
            if publish {
                let json = serde_json::to_string(&r).expect("an alert serializes");
                pipe.publish(redis_keys::live_alerts(p), json).ignore();
            }
        }
        if any_alert {
            pipe.zremrangebyrank(redis_keys::recent_alerts(p), 0, -self.recent_alerts - 1)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.connection).await
    }

    /// Writes again every decision made since `since` (less a margin for clock skew between
    /// this host and Postgres), oldest first, so each card ends with its latest.
    async fn rebuild(&mut self, store: &Store, since: SystemTime) -> Result<usize, RebuildError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.connection)
            .await?;
        let since = since - Duration::from_mins(1);
        let since_ms = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let mut rows = sqlx::query_as::<_, (String, String, String, f32, String, i64, String)>(
            "SELECT transaction_id, card_id, merchant_id, score, decision,
                 (extract(epoch FROM occurred_at) * 1000)::bigint, reasons
             FROM decisions WHERE decided_at >= to_timestamp($1 / 1000.0)
             ORDER BY occurred_at",
        )
        .bind(since_ms)
        .fetch(store.pool());
        let mut chunk = Vec::with_capacity(REBUILD_CHUNK);
        let mut written = 0;
        loop {
            let row = rows.try_next().await?;
            let done = row.is_none();
            chunk.extend(row);
            if chunk.len() == REBUILD_CHUNK || (done && !chunk.is_empty()) {
                let risks = chunk.iter().map(|r| CardRisk {
                    transaction_id: &r.0,
                    card_id: &r.1,
                    merchant_id: &r.2,
                    score: r.3,
                    decision: &r.4,
                    occurred_at_ms: r.5,
                    reasons: &r.6,
                });
                self.write_risks(risks, false).await?;
                written += chunk.len();
                chunk.clear();
            }
            if done {
                return Ok(written);
            }
        }
    }
}

/// Why a rebuild failed: Redis is still down, or Postgres could not be read.
#[derive(Debug, thiserror::Error)]
enum RebuildError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
}
