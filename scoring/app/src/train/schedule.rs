//! The live service's own champion, without a person in the loop: every `retrain.every` of
//! event time (`[engine.retrain]`, the schedule `vigil backtest` follows), a job trains boosted
//! trees on the decisions in Postgres with the labels known by then and promotes them when they
//! beat the champion in force, through the same window and policy as the backtest
//! ([`vigil_engine::retrain`]). The scorer picks the champion up from the registry and every
//! partition switches to it at one pooling step.
//!
//! Every scoring instance runs the job; a Postgres advisory lock lets one of them train at a
//! time, and the `retrainings` table, written in the lock's transaction, says when the next
//! one is due. Event time is the newest decision's: a replay of old traffic retrains as it
//! goes, as the backtest does.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use prometheus::{IntCounterVec, Opts, Registry};
use sqlx::PgPool;
use vigil_api::audit::Trail;
use vigil_engine::{EngineConfig, Retrained, Window};
use vigil_models::Artifact;
use vigil_registry::{self as registry, RegistryError, Status};
use vigil_schema::Timestamp;

use super::data;
use tokio_util::sync::CancellationToken;

/// The advisory lock only one retraining holds at a time (any number, the same everywhere).
const LOCK: i64 = 0x7669_6769_6c72_7472; // "vigilrtr"
/// Who the audit log says promoted the job's champions.
const ACTOR: &str = "vigil (scheduled retraining)";

/// The job's settings: the engine's (its window and `[engine.retrain]`) and how often to ask.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub engine: EngineConfig,
    pub check_every: Duration,
    /// The audit trail a promotion is written to.
    pub audit: Trail,
}

/// Starts the job on the current Tokio runtime unless retraining is off; it ends once `stop`
/// is set (a training under way is dropped, its transaction rolled back).
pub fn start(
    schedule: Schedule,
    pool: PgPool,
    registry: &Registry,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    if schedule.engine.retrain.every.as_seconds() == 0 {
        return Ok(None);
    }
    let outcomes = IntCounterVec::new(
        Opts::new(
            "vigil_retrainings_total",
            "Retrainings of the service's own champion, by outcome (promoted, kept, \
             too_few_frauds, failed)",
        ),
        &["outcome"],
    )?;
    registry.register(Box::new(outcomes.clone()))?;
    Ok(Some(tokio::spawn(async move {
        while !stop.is_cancelled() {
            tokio::select! {
                outcome = retrain_if_due(&schedule, &pool) => log(&outcomes, outcome),
                () = stop.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(schedule.check_every) => {},
                () = stop.cancelled() => return,
            }
        }
    })))
}

fn log(outcomes: &IntCounterVec, outcome: Result<Option<Record>>) {
    match outcome {
        Ok(None) => {}
        Ok(Some(r)) => {
            outcomes.with_label_values(&[r.outcome]).inc();
            tracing::info!(
                at = %r.at, outcome = r.outcome, model = r.model_version, frauds = r.frauds,
                average_precision = r.average_precision,
                champion_average_precision = r.champion_average_precision,
                seconds = r.seconds, "retrained"
            );
        }
        Err(e) => {
            outcomes.with_label_values(&["failed"]).inc();
            tracing::warn!(
                error = format!("{e:#}"),
                "retraining failed; asked again later"
            );
        }
    }
}

/// A `retrainings` row.
#[derive(Debug)]
struct Record {
    at: Timestamp,
    outcome: &'static str,
    model_version: Option<String>,
    frauds: i64,
    average_precision: Option<f64>,
    champion_average_precision: Option<f64>,
    seconds: f32,
}

/// Retrains if no other instance is and one is due at the newest decision's time; returns
/// what came of it, `None` when nothing was due.
async fn retrain_if_due(schedule: &Schedule, pool: &PgPool) -> Result<Option<Record>> {
    let engine = &schedule.engine;
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(None);
    }
    let (now, last): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT extract(epoch FROM max(occurred_at))::bigint FROM decisions),
                (SELECT extract(epoch FROM max(at))::bigint FROM retrainings)",
    )
    .fetch_one(&mut *tx)
    .await?;
    let every = engine.retrain.every.as_seconds();
    let Some(now) = now.filter(|&now| last.is_none_or(|last| now >= last + every)) else {
        return Ok(None);
    };
    let record = retrain(engine, &schedule.audit, pool, Window::at(engine, now)).await?;
    sqlx::query(
        "INSERT INTO retrainings (at, outcome, model_version, frauds, average_precision,
                                  champion_average_precision, seconds)
         VALUES (to_timestamp($1::float8 / 1000), $2, $3, $4, $5, $6, $7)",
    )
    .bind(record.at.unix_millis())
    .bind(record.outcome)
    .bind(&record.model_version)
    .bind(record.frauds)
    .bind(record.average_precision)
    .bind(record.champion_average_precision)
    .bind(record.seconds)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(record))
}

/// Trains on the decisions of `window` and registers the model, promoted if it beats the
/// champion in force.
async fn retrain(
    engine: &EngineConfig,
    audit: &Trail,
    pool: &PgPool,
    window: Window,
) -> Result<Record> {
    let started = Instant::now();
    let at = |seconds: i64| {
        Timestamp::from_unix_millis(seconds.saturating_mul(1000), 0).map_err(anyhow::Error::msg)
    };
    let frauds = known_frauds(pool, window).await?;
    if frauds < engine.retrain.min_frauds {
        // Counted first, so that the early weeks do not read every vector for nothing.
        return Ok(Record {
            at: at(window.now)?,
            outcome: "too_few_frauds",
            model_version: None,
            frauds: i64::try_from(frauds).unwrap_or(i64::MAX),
            average_precision: None,
            champion_average_precision: None,
            seconds: started.elapsed().as_secs_f32(),
        });
    }
    let period = (at(window.from)?, at(window.mature_before)?);
    let limit = i64::try_from(engine.max_pending_labels).unwrap_or(i64::MAX);
    let collected = data::from_postgres(pool, period, limit, &ProgressBar::hidden()).await?;
    let champion = champion(pool).await?;
    let config = engine.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let (training, validation) = data::window_slices(window, &config);
        let (training, validation, read) =
            collected.split(training, validation, config.retrain.negative_sample_rate);
        vigil_engine::retrain(
            (&training, &validation, read),
            &config,
            window,
            champion.as_ref(),
        )
    })
    .await
    .context("the training thread")??;
    let (name, candidate, frauds) = match &outcome {
        Retrained::TooFewFrauds { frauds } => ("too_few_frauds", None, *frauds),
        Retrained::Kept(c) => ("kept", Some(c), c.artifact.training.frauds),
        Retrained::Promoted(c) => ("promoted", Some(c), c.artifact.training.frauds),
    };
    if let Some(c) = candidate {
        registry::register(pool, &c.artifact).await?;
    }
    if let Retrained::Promoted(c) = &outcome {
        vigil_api::registry::set_status(pool, audit, ACTOR, &c.artifact.version, Status::Champion)
            .await
            .map_err(|e| anyhow::anyhow!("promoting {}: {e}", c.artifact.version))?;
    }
    Ok(Record {
        at: at(window.now)?,
        outcome: name,
        model_version: candidate.map(|c| c.artifact.version.clone()),
        frauds: i64::try_from(frauds).unwrap_or(i64::MAX),
        average_precision: candidate.and_then(|c| c.average_precision),
        champion_average_precision: candidate.and_then(|c| c.champion_average_precision),
        seconds: started.elapsed().as_secs_f32(),
    })
}

/// The frauds known at `window.now` among the decisions the window trains on.
async fn known_frauds(pool: &PgPool, window: Window) -> Result<u64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT d.transaction_id) FROM decisions d
           JOIN labels l ON l.transaction_id = d.transaction_id
          WHERE l.is_fraud AND l.labelled_at <= to_timestamp($3::float8)
            AND d.occurred_at >= to_timestamp($1::float8)
            AND d.occurred_at < to_timestamp($2::float8)",
    )
    .bind(window.from as f64)
    .bind(window.validation_from as f64)
    .bind(window.now as f64)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The champion in force, unless there is none or it cannot be served (another feature
/// schema's: any new model beats it).
async fn champion(pool: &PgPool) -> Result<Option<Artifact>> {
    let Some(version) = registry::champion(pool).await? else {
        return Ok(None);
    };
    match registry::artifact(pool, &version).await {
        Ok(artifact) => Ok(Some(artifact)),
        Err(RegistryError::Artifact(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
