//! The labels alert work gives, on their way to `labels.v1`: queued in the transaction that
//! changes the alert (`labels_outbox`), sent by a relay task right after the commit, deleted
//! once the broker has acknowledged them. A broker that is down holds the labels, not the
//! investigator: they go out when it is back, in the order given.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use vigil_common::kafka;
use vigil_common::prepare::Prepared;
use vigil_schema::topics;

/// How often the relay looks for labels when nobody nudges it (labels a failed send left).
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// At most this many labels a round.
const ROUND: i64 = 500;

/// Queues `label` (as prepared for `labels.v1`), sent by `sent_by`, in the alert's transaction.
pub async fn queue(tx: &mut PgConnection, label: &Prepared, sent_by: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO labels_outbox (card_key, payload, sent_by) VALUES ($1, $2, $3)")
        .bind(&label.0)
        .bind(&label.1)
        .bind(sent_by)
        .execute(tx)
        .await
        .map(drop)
}

/// The relay: sends what is queued whenever nudged (after each commit that queued a label) and
/// every few seconds, for as long as the runtime runs.
pub fn start(pool: PgPool, producer: FutureProducer) -> Arc<Notify> {
    let nudge = Arc::new(Notify::new());
    let nudged = nudge.clone();
    tokio::spawn(async move {
        loop {
            let _ = tokio::time::timeout(RETRY_EVERY, nudged.notified()).await;
            loop {
                match send(&pool, &producer).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "labels of alert work not sent yet; retrying");
                        break;
                    }
                }
            }
        }
    });
    nudge
}

/// Sends the oldest queued labels and deletes them once acknowledged; returns how many.
/// Locked while sent, so two API processes never send one label twice.
async fn send(pool: &PgPool, producer: &FutureProducer) -> Result<usize, String> {
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let queued: Vec<(i64, String, Vec<u8>, String)> = sqlx::query_as(
        "SELECT id, card_key, payload, sent_by FROM labels_outbox
          ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(ROUND)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    for (_, key, payload, sent_by) in &queued {
        let record = [(key, payload)];
        kafka::produce_all_sent_by(producer, topics::LABELS, &record, Some(sent_by))
            .await
            .map_err(|e| e.to_string())?;
    }
    let ids: Vec<i64> = queued.iter().map(|q| q.0).collect();
    sqlx::query("DELETE FROM labels_outbox WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(queued.len())
}
