//! Postgres: one transaction per batch and lane holding its decisions, alerts, labels and the
//! consumer offsets they reach; the offsets and engine snapshots read back on assignment.

use std::collections::{BTreeMap, HashMap};

use sqlx::{PgConnection, PgPool};

use super::rows::Rows;
use super::{Payment, background};
use crate::Snapshot;
use vigil_schema::topics;

/// What decided a batch, recorded with each decision: the champion's version, the shadow
/// models' (`shadows[i]` is shadow model `i`'s) and the rule set's.
#[derive(Debug)]
pub struct Deciders<'a> {
    pub champion: &'a str,
    pub shadows: Vec<&'a str>,
    pub rule_set: i32,
}

/// Where a partition's consumption stands in Postgres.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The next offsets to consume (transactions, labels), as committed with the decisions.
    pub committed: [i64; 2],
    /// The newest engine snapshot.
    pub snapshot: Option<StoredSnapshot>,
}

/// An engine snapshot as read back, decompressed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The offsets it has consumed up to (transactions, labels).
    pub offsets: [i64; 2],
    pub state: Vec<u8>,
    /// The full chunks of pending vectors it needs, by their first sequence number.
    pub chunks: BTreeMap<u64, Vec<u8>>,
}

/// The index of a consumed topic in `[transactions, labels]` offset pairs.
pub fn topic_index(topic: &str) -> Option<usize> {
    topics::CONSUMED.iter().position(|t| *t == topic)
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    group: String,
}

impl Store {
    pub fn new(pool: PgPool, group: String) -> Self {
        Self { pool, group }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes one lane of a batch, rows and offsets, in one transaction. Rows are keyed by transaction id
    /// and never overwritten, so a batch written twice (after a crash between its commit and
    /// the next) has the effect of one; offsets only move forward.
    /// Returns the decisions' outbox row, to delete once `decisions.v1` has them.
    pub async fn commit(
        &self,
        rows: &Rows<'_>,
        deciders: &Deciders<'_>,
    ) -> sqlx::Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let outbox = self.write(&mut tx, rows, deciders).await?;
        tx.commit().await?;
        Ok(outbox)
    }

    /// Whether Postgres takes `rows`: written as [`Store::commit`] writes them, then rolled
    /// back.
    pub async fn probe(&self, rows: &Rows<'_>, deciders: &Deciders<'_>) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        self.write(&mut tx, rows, deciders).await?;
        tx.rollback().await
    }

    async fn write(
        &self,
        tx: &mut PgConnection,
        rows: &Rows<'_>,
        deciders: &Deciders<'_>,
    ) -> sqlx::Result<Option<i64>> {
        let d = &rows.decisions;
        let mut outbox = None;
        if !d.is_empty() {
            outbox = Some(
                sqlx::query_scalar(
                    "INSERT INTO decisions_outbox (transaction_ids) VALUES ($1) RETURNING id",
                )
                .bind(d.transaction_id.values())
                .fetch_one(&mut *tx)
                .await?,
            );
            let occurred: Vec<i64> = d.occurred_at.iter().map(|t| t.unix_millis()).collect();
            let actions: Vec<&str> = d.action.iter().map(|a| a.as_str()).collect();
            let features: Vec<&[u8]> = (0..d.len()).map(|i| d.features(i)).collect();
            sqlx::query(
                "INSERT INTO decisions (transaction_id, card_id, customer_id, merchant_id,
                     occurred_at, amount_minor, currency, score, decision, model_version,
                     reasons, features, lat, lon, country, mcc, channel, model_log_odds,
                     rule_set_version, shadow_rules)
                 SELECT t, c, cu, m, to_timestamp(o / 1000.0), a, cur, s, d, $12, r, f, la, lo,
                     co, mc, ch, ml, $19, string_to_array(NULLIF(sr, ''), ';')
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                     $6::bigint[], $7::text[], $8::real[], $9::text[], $10::text[], $11::bytea[],
                     $13::float8[], $14::float8[], $15::text[], $16::text[], $17::text[],
                     $18::real[], $20::text[])
                     AS u(t, c, cu, m, o, a, cur, s, d, r, f, la, lo, co, mc, ch, ml, sr)
                 ON CONFLICT (transaction_id) DO NOTHING",
            )
            .bind(d.transaction_id.values())
            .bind(d.card_id.values())
            .bind(d.customer_id.options())
            .bind(d.merchant_id.values())
            .bind(&occurred)
            .bind(&d.amount_minor)
            .bind(d.currency.values())
            .bind(&d.score)
            .bind(&actions)
            .bind(d.reasons.values())
            .bind(&features)
            .bind(deciders.champion)
            .bind(&d.lat)
            .bind(&d.lon)
            .bind(d.country.options())
            .bind(d.mcc.options())
            .bind(d.channel.options())
            .bind(&d.model_log_odds)
            .bind(deciders.rule_set)
            .bind(d.shadow_rules.values())
            .execute(&mut *tx)
            .await?;
            if !d.shadows.is_empty() {
                let ids: Vec<&str> = d
                    .shadows
                    .iter()
                    .map(|s| d.transaction_id.get(s.decision as usize))
                    .collect();
                let models: Vec<&str> = d
                    .shadows
                    .iter()
                    .map(|s| deciders.shadows[usize::from(s.model)])
                    .collect();
                let scores: Vec<f32> = d.shadows.iter().map(|s| s.score).collect();
                let actions: Vec<&str> = d.shadows.iter().map(|s| s.action.as_str()).collect();
                sqlx::query(
                    "INSERT INTO shadow_scores (transaction_id, model_version, score, decision)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::real[], $4::text[])
                     ON CONFLICT DO NOTHING",
                )
                .bind(&ids)
                .bind(&models)
                .bind(&scores)
                .bind(&actions)
                .execute(&mut *tx)
                .await?;
            }
            let alerts: Vec<&str> = d.alerts().map(|i| d.transaction_id.get(i)).collect();
            if !alerts.is_empty() {
                let cards: Vec<&str> = d.alerts().map(|i| d.card_id.get(i)).collect();
                // Joined to this card's decision: an id reused on another card (whose engine
                // could not tell) has the first card's decision stored, which this alert is not.
                sqlx::query(
                    "INSERT INTO alerts (transaction_id, card_id, merchant_id, occurred_at, score,
                         decision, reasons, transaction, explanation, rules)
                     SELECT d.transaction_id, d.card_id, d.merchant_id, d.occurred_at, d.score,
                         d.decision, d.reasons, u.tx::jsonb, u.e::jsonb, string_to_array(u.c, ';')
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                         AS u(t, tx, e, c, card)
                     JOIN decisions d ON d.transaction_id = u.t AND d.card_id = u.card
                     ON CONFLICT (transaction_id) DO NOTHING",
                )
                .bind(&alerts)
                .bind(d.alert_transaction.values())
                .bind(d.alert_explanation.values())
                .bind(d.alert_codes.values())
                .bind(&cards)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO alert_reasons (reason, transaction_id, occurred_at, score)
                     SELECT unnest(rules), transaction_id, occurred_at, score FROM alerts
                     WHERE transaction_id = ANY($1)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&alerts)
                .execute(&mut *tx)
                .await?;
            }
        }
        if !rows.labels.is_empty() {
            let l = &rows.labels;
            let ids: Vec<&str> = l.iter().map(|r| r.label.transaction_id.as_str()).collect();
            let sources: Vec<&str> = l.iter().map(|r| r.label.source.as_str()).collect();
            let frauds: Vec<bool> = l.iter().map(|r| r.label.is_fraud).collect();
            let at: Vec<i64> = l
                .iter()
                .map(|r| r.label.labelled_at.unix_millis())
                .collect();
            let cards: Vec<Option<&str>> = l
                .iter()
                .map(|r| r.label.card_id.as_ref().map(vigil_schema::CardId::as_str))
                .collect();
            let sent_by: Vec<Option<&str>> = l.iter().map(|r| r.sent_by.as_deref()).collect();
            // A batch can hold a transaction's label from one source twice (one request may
            // repeat it): the last read wins, as it would over two batches; an upsert meeting
            // the same row twice fails.
            sqlx::query(
                "INSERT INTO labels (transaction_id, source, is_fraud, labelled_at, card_id, sent_by)
                 SELECT DISTINCT ON (t, s) t, s, f, to_timestamp(a / 1000.0), c, b
                 FROM UNNEST($1::text[], $2::text[], $3::bool[], $4::bigint[], $5::text[],
                             $6::text[])
                     WITH ORDINALITY AS u(t, s, f, a, c, b, n)
                 ORDER BY t, s, n DESC
                 ON CONFLICT (transaction_id, source) DO UPDATE
                 SET is_fraud = EXCLUDED.is_fraud, labelled_at = EXCLUDED.labelled_at,
                     sent_by = EXCLUDED.sent_by",
            )
            .bind(&ids)
            .bind(&sources)
            .bind(&frauds)
            .bind(&at)
            .bind(&cards)
            .bind(&sent_by)
            .execute(&mut *tx)
            .await?;
        }
        let topics: Vec<&str> = rows.offsets.iter().map(|o| o.0).collect();
        let partitions: Vec<i32> = rows.offsets.iter().map(|o| o.1).collect();
        let offsets: Vec<i64> = rows.offsets.iter().map(|o| o.2).collect();
        sqlx::query(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)
             SELECT $1, t, p, o FROM UNNEST($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)
             ON CONFLICT (consumer_group, topic, partition) DO UPDATE
             SET next_offset = EXCLUDED.next_offset
             WHERE consumer_offsets.next_offset < EXCLUDED.next_offset",
        )
        .bind(&self.group)
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .execute(&mut *tx)
        .await?;
        Ok(outbox)
    }

    /// The outbox rows of decisions the broker has acknowledged: nothing to send again.
    pub async fn sent(&self, outbox: &[i64]) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM decisions_outbox WHERE id = ANY($1)")
            .bind(outbox)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// The committed decisions of `ids`, each as its reply ([`vigil_schema::Reply`], JSON), by
    /// transaction id.
    pub async fn replies(&self, ids: &[&str]) -> sqlx::Result<HashMap<String, String>> {
        let rows: Vec<(String, String, f32, String, String)> = sqlx::query_as(
            "SELECT transaction_id, decision, score, reasons, model_version
             FROM decisions WHERE transaction_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(transaction_id, decision, score, reasons, model_version)| {
                    let reply = vigil_schema::Reply::Decided {
                        transaction_id: transaction_id.as_str().into(),
                        decision: vigil_schema::Action::parse(&decision)?,
                        score,
                        reasons: reasons.into(),
                        model_version: model_version.into(),
                    };
                    Some((transaction_id.clone(), super::replies::json(&reply)))
                },
            )
            .collect())
    }

    /// The payments decided under `ids`.
    pub async fn decided(&self, ids: &[&str]) -> sqlx::Result<Vec<Payment>> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, card_id, merchant_id, amount_minor,
                 round(extract(epoch FROM occurred_at) * 1000)::bigint
             FROM decisions WHERE transaction_id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(transaction_id, card_id, merchant_id, amount_minor, occurred_at_ms)| Payment {
                    transaction_id,
                    card_id,
                    merchant_id,
                    amount_minor,
                    occurred_at_ms,
                },
            )
            .collect())
    }

    /// The committed offsets and newest snapshot of each of `partitions`.
    pub async fn stored(&self, partitions: &[i32]) -> sqlx::Result<BTreeMap<i32, Stored>> {
        let mut stored: BTreeMap<i32, Stored> =
            partitions.iter().map(|&p| (p, Stored::default())).collect();
        let offsets: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT topic, partition, next_offset FROM consumer_offsets
             WHERE consumer_group = $1 AND partition = ANY($2)",
        )
        .bind(&self.group)
        .bind(partitions)
        .fetch_all(&self.pool)
        .await?;
        for (topic, partition, offset) in offsets {
            if let (Some(s), Some(t)) = (stored.get_mut(&partition), topic_index(&topic)) {
                s.committed[t] = offset;
            }
        }
        for (partition, snapshot) in self.snapshots(partitions).await? {
            if let Some(s) = stored.get_mut(&partition) {
                s.snapshot = Some(snapshot);
            }
        }
        Ok(stored)
    }

    /// The newest snapshot of each of `partitions` that has one and can be decoded, with its
    /// chunks; read in one repeatable-read transaction, so that a snapshot saved meanwhile
    /// cannot have deleted chunks that the one read needs.
    async fn snapshots(&self, partitions: &[i32]) -> sqlx::Result<BTreeMap<i32, StoredSnapshot>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let rows: Vec<(i32, i64, i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT partition, transactions_offset, labels_offset, codec, state
             FROM engine_snapshots WHERE consumer_group = $1 AND partition = ANY($2)",
        )
        .bind(&self.group)
        .bind(partitions)
        .fetch_all(&mut *tx)
        .await?;
        let chunks: Vec<(i32, i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT c.partition, c.first_seq, c.codec, c.vectors
             FROM engine_snapshot_chunks c
             JOIN engine_snapshots s USING (consumer_group, partition)
             WHERE c.consumer_group = $1 AND c.partition = ANY($2)
                 AND c.first_seq >= s.chunks_from",
        )
        .bind(&self.group)
        .bind(partitions)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        let mut snapshots = BTreeMap::new();
        for (partition, tx_offset, label_offset, codec, state) in rows {
            match decode(&codec, state) {
                Ok(state) => {
                    let snapshot = StoredSnapshot {
                        offsets: [tx_offset, label_offset],
                        state,
                        chunks: BTreeMap::new(),
                    };
                    snapshots.insert(partition, snapshot);
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "unusable snapshot; replaying the partition");
                }
            }
        }
        for (partition, first, codec, vectors) in chunks {
            let Some(snapshot) = snapshots.get_mut(&partition) else {
                continue;
            };
            match decode(&codec, vectors) {
                Ok(vectors) => {
                    snapshot.chunks.insert(first as u64, vectors);
                }
                // The engine names the missing chunk when it restores.
                Err(e) => tracing::warn!(partition, first, error = %e, "unusable snapshot chunk"),
            }
        }
        Ok(snapshots)
    }

    /// Saves a partition's engine snapshot, taken when it had consumed up to `offsets`, with its
    /// new full chunks; the chunks no snapshot needs any more go. Compressed first, off the
    /// runtime's threads: every byte goes through the WAL that the commits of decisions wait on.
    /// Returns false, saving nothing, when a newer snapshot of the partition is stored already
    /// (saved by another instance that had the partition meanwhile).
    pub async fn save_snapshot(
        &self,
        partition: i32,
        offsets: [i64; 2],
        pooled_to: i64,
        snapshot: Snapshot,
    ) -> sqlx::Result<bool> {
        let chunks_from = snapshot.chunks_from as i64;
        let (state, firsts, chunks) = background::run(move || {
            let (firsts, chunks): (Vec<i64>, Vec<Vec<u8>>) = snapshot
                .new_chunks
                .iter()
                .map(|(first, bytes)| (*first as i64, lz4_flex::compress_prepend_size(bytes)))
                .unzip();
            (
                lz4_flex::compress_prepend_size(&snapshot.state),
                firsts,
                chunks,
            )
        })
        .await
        .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?;
        let mut tx = self.pool.begin().await?;
        let saved = sqlx::query(
            "INSERT INTO engine_snapshots (consumer_group, partition, transactions_offset,
                 labels_offset, codec, state, chunks_from, pooled_to)
             VALUES ($1, $2, $3, $4, 'lz4', $5, $6, $7)
             ON CONFLICT (consumer_group, partition) DO UPDATE
             SET transactions_offset = EXCLUDED.transactions_offset,
                 labels_offset = EXCLUDED.labels_offset, codec = EXCLUDED.codec,
                 state = EXCLUDED.state, chunks_from = EXCLUDED.chunks_from,
                 pooled_to = EXCLUDED.pooled_to, taken_at = now()
             WHERE engine_snapshots.transactions_offset <= EXCLUDED.transactions_offset
             RETURNING partition",
        )
        .bind(&self.group)
        .bind(partition)
        .bind(offsets[0])
        .bind(offsets[1])
        .bind(state)
        .bind(chunks_from)
        .bind((pooled_to > i64::MIN).then_some(pooled_to))
        .fetch_optional(&mut *tx)
        .await?;
        if saved.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO engine_snapshot_chunks (consumer_group, partition, first_seq, codec,
                 vectors)
             SELECT $1, $2, f, 'lz4', v FROM UNNEST($3::bigint[], $4::bytea[]) AS u(f, v)
             ON CONFLICT (consumer_group, partition, first_seq) DO UPDATE
             SET codec = EXCLUDED.codec, vectors = EXCLUDED.vectors",
        )
        .bind(&self.group)
        .bind(partition)
        .bind(&firsts)
        .bind(&chunks)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM engine_snapshot_chunks
             WHERE consumer_group = $1 AND partition = $2 AND first_seq < $3",
        )
        .bind(&self.group)
        .bind(partition)
        .bind(chunks_from)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl Store {
    /// The newest snapshot of the shared state pooled to `at_most` or before, with the inbox
    /// of shares it goes on from; `None` if there is none (the shares are then read from the
    /// start).
    pub async fn shared_snapshot(&self, at_most: i64) -> sqlx::Result<Option<StoredShared>> {
        let row: Option<(i64, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT pooled_to, codec, state, inbox FROM shared_snapshots
             WHERE consumer_group = $1 AND pooled_to <= $2
             ORDER BY pooled_to DESC LIMIT 1",
        )
        .bind(&self.group)
        .bind(at_most)
        .fetch_optional(&self.pool)
        .await?;
        let Some((pooled_to, codec, state, inbox)) = row else {
            return Ok(None);
        };
        let state = tokio::task::spawn_blocking(move || decode(&codec, state))
            .await
            .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?;
        match state {
            Ok(state) => Ok(Some(StoredShared {
                pooled_to,
                state,
                inbox,
            })),
            Err(e) => {
                tracing::warn!(pooled_to, error = %e, "unusable shared snapshot");
                Ok(None)
            }
        }
    }

    /// Saves a snapshot of the shared state (the same on every instance: the first saved for a
    /// boundary stays), and deletes those older than the newest one that every partition's
    /// snapshot can go on from (once each of the `partitions` has one).
    pub async fn save_shared(
        &self,
        pooled_to: i64,
        state: Vec<u8>,
        inbox: Vec<u8>,
        partitions: usize,
    ) -> sqlx::Result<()> {
        let state = background::run(move || lz4_flex::compress_prepend_size(&state))
            .await
            .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO shared_snapshots (consumer_group, pooled_to, codec, state, inbox)
             VALUES ($1, $2, 'lz4', $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&self.group)
        .bind(pooled_to)
        .bind(state)
        .bind(inbox)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM shared_snapshots WHERE consumer_group = $1 AND pooled_to < (
                 SELECT max(s.pooled_to) FROM shared_snapshots s
                 WHERE s.consumer_group = $1 AND s.pooled_to <= (
                     SELECT min(e.pooled_to) FROM engine_snapshots e
                     WHERE e.consumer_group = $1
                     HAVING count(*) = $2 AND bool_and(e.pooled_to IS NOT NULL)))",
        )
        .bind(&self.group)
        .bind(partitions as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}

/// A snapshot of the shared state as read back.
#[derive(Debug)]
pub struct StoredShared {
    pub pooled_to: i64,
    pub state: Vec<u8>,
    /// The shares inbox it goes on with (`Inbox::to_bytes`).
    pub inbox: Vec<u8>,
}

/// Bytes stored with `codec`, decompressed.
fn decode(codec: &str, stored: Vec<u8>) -> Result<Vec<u8>, String> {
    match codec {
        "none" => Ok(stored),
        "lz4" => lz4_flex::decompress_size_prepended(&stored).map_err(|e| e.to_string()),
        other => Err(format!("unknown codec {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deciders() -> Deciders<'static> {
        Deciders {
            champion: "online-test",
            shadows: vec![],
            rule_set: 1,
        }
    }

    /// A store on a database of its own (the local Postgres, migrated), dropped at the end.
    struct TestStore {
        store: Store,
        admin: PgPool,
        name: String,
    }

    impl TestStore {
        async fn new() -> Self {
            let server = "postgres://postgres@127.0.0.1:5432";
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let name = format!("vigil_store_test_{}_{nanos}", std::process::id());
            let admin = PgPool::connect(&format!("{server}/postgres"))
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&admin)
                .await
                .unwrap();
            let pool = PgPool::connect(&format!("{server}/{name}")).await.unwrap();
            let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/migrations");
            sqlx::migrate::Migrator::new(std::path::Path::new(migrations))
                .await
                .unwrap()
                .run(&pool)
                .await
                .unwrap();
            Self {
                store: Store::new(pool, "test-group".into()),
                admin,
                name,
            }
        }

        async fn drop_database(self) {
            self.store.pool.close().await;
            let drop = format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name);
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                .execute(&self.admin)
                .await
                .unwrap();
        }
    }

    /// A batch of one approved payment `id`, reaching `offset` of partition 0 of
    /// `transactions.v1`.
    fn one_decision(id: &str, offset: i64) -> Rows<'static> {
        let mut rows = Rows::default();
        let d = &mut rows.decisions;
        d.transaction_id.push(id);
        d.card_id.push("card-1");
        d.customer_id.push_option(None);
        d.merchant_id.push("shop-1");
        d.occurred_at
            .push(vigil_schema::Timestamp::from_unix_millis(1_767_225_600_000, 0).unwrap());
        d.amount_minor.push(4200);
        d.lat.push(Some(48.85));
        d.lon.push(Some(2.35));
        d.currency.push("EUR");
        d.country.push("FR");
        d.mcc.push("5411");
        d.channel.push("pos");
        d.score.push(0.01);
        d.model_log_odds.push(-4.6);
        d.action.push(crate::engine::Action::Approve);
        d.reasons.push("");
        d.shadow_rules.push("watched;night");
        d.push_features(&vigil_models::FeatureVector(
            [0.0; vigil_models::FEATURE_COUNT],
        ));
        d.produced_at_ms.push(None);
        rows.offsets.push((topics::TRANSACTIONS, 0, offset));
        rows
    }

    async fn decisions(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM decisions")
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    /// A batch committed twice (a crash between its commit and the next) has the effect of
    /// one, and the offsets committed never move back.
    #[tokio::test]
    async fn a_batch_committed_twice_counts_once_and_offsets_only_move_forward() {
        let test = TestStore::new().await;
        let store = &test.store;
        let batch = one_decision("t-1", 10);
        store.commit(&batch, &deciders()).await.unwrap();
        store.commit(&batch, &deciders()).await.unwrap();
        assert_eq!(decisions(store).await, 1);
        let (version, shadow_rules, channel): (i32, Vec<String>, String) =
            sqlx::query_as("SELECT rule_set_version, shadow_rules, channel FROM decisions")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(
            (version, shadow_rules, channel.as_str()),
            (1, vec!["watched".into(), "night".into()], "pos")
        );
        let position: (Option<f64>, Option<f64>) =
            sqlx::query_as("SELECT lat, lon FROM decisions WHERE transaction_id = 't-1'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(position, (Some(48.85), Some(2.35)));
        assert_eq!(
            store.decided(&["t-1", "t-2"]).await.unwrap().len(),
            1,
            "t-1 is decided, t-2 is not"
        );

        store
            .commit(&one_decision("t-2", 5), &deciders())
            .await
            .unwrap();
        let stored = store.stored(&[0]).await.unwrap();
        assert_eq!(
            stored[&0].committed,
            [10, 0],
            "an older offset does not move it back"
        );
        test.drop_database().await;
    }

    fn snapshot(state: &[u8], chunks_from: u64, new_chunks: &[(u64, &[u8])]) -> Snapshot {
        Snapshot {
            state: state.to_vec(),
            chunks_from,
            new_chunks: new_chunks.iter().map(|(f, b)| (*f, b.to_vec())).collect(),
        }
    }

    /// A snapshot reads back as saved, with the chunks it needs; a later one replaces it and
    /// lets go of the chunks before its `chunks_from`; an older one (from an instance that had
    /// the partition before) is refused.
    #[tokio::test]
    async fn snapshots_read_back_newest_first_with_the_chunks_they_need() {
        let test = TestStore::new().await;
        let store = &test.store;
        let first = snapshot(b"state at 100", 0, &[(0, b"chunk 0"), (4096, b"chunk 1")]);
        assert!(
            store
                .save_snapshot(3, [100, 7], 5_000, first)
                .await
                .unwrap()
        );

        let stored = store.stored(&[3, 4]).await.unwrap();
        let saved = stored[&3].snapshot.as_ref().unwrap();
        assert_eq!(saved.offsets, [100, 7]);
        assert_eq!(saved.state, b"state at 100");
        assert_eq!(
            saved.chunks.keys().copied().collect::<Vec<_>>(),
            [0, 4096],
            "both chunks, decompressed under their first sequence number"
        );
        assert_eq!(saved.chunks[&4096], b"chunk 1");
        assert_eq!(stored[&4], Stored::default(), "a partition never saved");

        let later = snapshot(b"state at 200", 4096, &[(8192, b"chunk 2")]);
        assert!(
            store
                .save_snapshot(3, [200, 9], 6_000, later)
                .await
                .unwrap()
        );
        let older = snapshot(b"state at 150", 0, &[]);
        assert!(
            !store
                .save_snapshot(3, [150, 8], 5_500, older)
                .await
                .unwrap(),
            "an older snapshot never replaces a newer one"
        );

        let stored = store.stored(&[3]).await.unwrap();
        let saved = stored[&3].snapshot.as_ref().unwrap();
        assert_eq!(
            (saved.offsets, saved.state.as_slice()),
            ([200, 9], &b"state at 200"[..])
        );
        assert_eq!(
            saved.chunks.keys().copied().collect::<Vec<_>>(),
            [4096, 8192],
            "chunk 0 is gone: no snapshot needs it"
        );
        test.drop_database().await;
    }

    /// The shared state is read back at or before the boundary asked for, the newest there.
    #[tokio::test]
    async fn the_shared_snapshot_read_is_the_newest_at_or_before_the_boundary() {
        let test = TestStore::new().await;
        let store = &test.store;
        for pooled_to in [10, 20, 30] {
            let state = format!("pooled to {pooled_to}").into_bytes();
            store
                .save_shared(pooled_to, state, vec![pooled_to as u8], 8)
                .await
                .unwrap();
        }
        let at_25 = store.shared_snapshot(25).await.unwrap().unwrap();
        assert_eq!((at_25.pooled_to, at_25.inbox), (20, vec![20]));
        assert_eq!(at_25.state, b"pooled to 20");
        assert!(store.shared_snapshot(5).await.unwrap().is_none());
        test.drop_database().await;
    }
}
