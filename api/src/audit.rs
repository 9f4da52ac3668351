//! The audit trail: every state-changing call appends a record (who, what, when, before,
//! after) in the same transaction as the change. Each record's hash covers its fields and the
//! previous record's hash, so that changing, removing or reordering any record breaks the chain
//! from there on; [`Trail::verify`] walks it and names the first record that does not hold.
//! Appends are serialized by a transaction-scoped advisory lock, which keeps `seq` gapless.
//!
//! The hash is an HMAC whose key is kept outside Postgres (in the services' configuration):
//! whoever can write to the database, even as its superuser, cannot recompute the chain after
//! changing a record. Records from before the chain was keyed keep their plain SHA-256 and must
//! all come first. Removing the newest records leaves a shorter chain intact; checkpoints
//! ([`Checkpoint`]) kept outside the database find that.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures_util::TryStreamExt;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::digest::Update;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// The advisory lock that serializes appends ("VIGILAUD").
const APPEND_LOCK: i64 = 0x5649_4749_4C41_5544;
/// The `prev_hash` of the first record.
const GENESIS: [u8; 32] = [0; 32];

/// One change, as the caller describes it.
#[derive(Debug)]
pub struct Change<'a> {
    pub actor: &'a str,
    /// What was done: `alert.update`, `list.create`, `key.revoke`, ...
    pub action: &'a str,
    /// What it was done to: `alert tx_1`, `list 12`, `key 3`.
    pub target: &'a str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// The trail as the services write and check it: the key of its HMAC.
#[derive(Clone)]
pub struct Trail {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail").finish_non_exhaustive()
    }
}

impl Trail {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.into() }
    }

    /// Appends `change` to the trail, within the caller's transaction.
    pub async fn append(&self, tx: &mut PgConnection, change: Change<'_>) -> sqlx::Result<i64> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        let last: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS.to_vec()),
        };
        // Postgres keeps microseconds: hash what it will give back.
        let at = Utc::now().trunc_subsecs(6);
        let before = change.before.map(|v| v.to_string());
        let after = change.after.map(|v| v.to_string());
        let record = Record {
            seq,
            at,
            actor: change.actor,
            action: change.action,
            target: change.target,
            before: before.as_deref(),
            after: after.as_deref(),
        };
        let hash = self.hash(&record, &prev_hash, true);
        sqlx::query(
            "INSERT INTO audit_log
                 (seq, at, actor, action, target, before, after, prev_hash, hash, keyed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true)",
        )
        .bind(seq)
        .bind(at)
        .bind(change.actor)
        .bind(change.action)
        .bind(change.target)
        .bind(&before)
        .bind(&after)
        .bind(&prev_hash)
        .bind(hash.as_slice())
        .execute(&mut *tx)
        .await?;
        Ok(seq)
    }

    /// A record's hash: the HMAC, or for a record from before the chain was keyed, SHA-256.
    fn hash(&self, record: &Record<'_>, prev_hash: &[u8], keyed: bool) -> [u8; 32] {
        if keyed {
            let mut mac =
                <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key");
            record.feed(&mut mac, prev_hash);
            mac.finalize().into_bytes().into()
        } else {
            let mut digest = Sha256::new();
            record.feed(&mut digest, prev_hash);
            digest.finalize().into()
        }
    }
}

/// The hashed fields of a record.
struct Record<'a> {
    seq: i64,
    at: DateTime<Utc>,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    before: Option<&'a str>,
    after: Option<&'a str>,
}

impl Record<'_> {
    /// Feeds the previous hash and each field, length-prefixed so that no two records serialize
    /// alike.
    fn feed(&self, h: &mut impl Update, prev_hash: &[u8]) {
        h.update(prev_hash);
        h.update(&self.seq.to_le_bytes());
        h.update(&self.at.timestamp_micros().to_le_bytes());
        for field in [
            Some(self.actor),
            Some(self.action),
            Some(self.target),
            self.before,
            self.after,
        ] {
            match field {
                None => h.update(&[0]),
                Some(text) => {
                    h.update(&[1]);
                    h.update(&(text.len() as u64).to_le_bytes());
                    h.update(text.as_bytes());
                }
            }
        }
    }
}

/// What a walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every record holds; the first `unkeyed` of them are from before the chain was keyed.
    Intact { records: i64, unkeyed: i64 },
    /// The first record that does not, and why.
    Broken { seq: i64, reason: String },
}

/// A record's place and hash, kept outside the database (`vigil audit checkpoint`), so that
/// removing the newest records, which leaves a shorter chain intact, is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: [u8; 32],
}

impl Checkpoint {
    /// `SEQ:HEX`, as `vigil audit checkpoint` writes it.
    pub fn parse(line: &str) -> Result<Self, String> {
        let bad = || format!("`{line}` is no checkpoint (SEQ:SHA256-HEX)");
        let (seq, hex) = line.trim().split_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut hash = [0u8; 32];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self { seq, hash })
    }
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.seq)?;
        self.hash.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The newest record's checkpoint; `None` while the trail is empty.
pub async fn checkpoint(pool: &PgPool) -> sqlx::Result<Option<Checkpoint>> {
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    Ok(last.and_then(|(seq, hash)| {
        Some(Checkpoint {
            seq,
            hash: hash.try_into().ok()?,
        })
    }))
}

/// A record as stored.
#[derive(sqlx::FromRow)]
struct Stored {
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    target: String,
    before: Option<String>,
    after: Option<String>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
    keyed: bool,
}

impl Trail {
    /// Walks the whole chain in order; each of `checkpoints` must be a record of it, with the
    /// hash it had when the checkpoint was taken.
    pub async fn verify(&self, pool: &PgPool, checkpoints: &[Checkpoint]) -> sqlx::Result<Verdict> {
        let mut rows = sqlx::query_as::<_, Stored>(
            "SELECT seq, at, actor, action, target, before, after, prev_hash, hash, keyed
             FROM audit_log ORDER BY seq",
        )
        .fetch(pool);
        let mut expected_seq = 1;
        let mut prev_hash = GENESIS.to_vec();
        let mut unkeyed = 0;
        while let Some(stored) = rows.try_next().await? {
            let seq = stored.seq;
            if seq != expected_seq {
                return Ok(Verdict::Broken {
                    seq: expected_seq,
                    reason: format!("record {expected_seq} is missing (the next is {seq})"),
                });
            }
            if let Some(reason) = self.fault(&stored, &prev_hash, unkeyed, checkpoints) {
                return Ok(Verdict::Broken { seq, reason });
            }
            unkeyed += i64::from(!stored.keyed);
            prev_hash = stored.hash;
            expected_seq += 1;
        }
        let records = expected_seq - 1;
        if let Some(beyond) = checkpoints
            .iter()
            .filter(|c| c.seq > records)
            .min_by_key(|c| c.seq)
        {
            return Ok(Verdict::Broken {
                seq: records + 1,
                reason: format!(
                    "the trail ends at record {records}, but record {} was checkpointed: the \
                     newest records were removed",
                    beyond.seq
                ),
            });
        }
        Ok(Verdict::Intact { records, unkeyed })
    }

    /// Why `stored`, the record after `unkeyed_before` unkeyed ones and one whose hash is
    /// `prev_hash`, does not hold, if it does not.
    fn fault(
        &self,
        stored: &Stored,
        prev_hash: &[u8],
        unkeyed_before: i64,
        checkpoints: &[Checkpoint],
    ) -> Option<String> {
        if stored.prev_hash != prev_hash {
            return Some("its prev_hash is not the previous record's hash".into());
        }
        if !stored.keyed && unkeyed_before + 1 < stored.seq {
            return Some(
                "it is not keyed, but records before it are: the chain was rewritten".into(),
            );
        }
        let record = Record {
            seq: stored.seq,
            at: stored.at,
            actor: &stored.actor,
            action: &stored.action,
            target: &stored.target,
            before: stored.before.as_deref(),
            after: stored.after.as_deref(),
        };
        if self.hash(&record, prev_hash, stored.keyed).as_slice() != stored.hash.as_slice() {
            return Some(
                "its fields do not match its hash: the record was changed (or the audit key is \
                 not the services')"
                    .into(),
            );
        }
        checkpoints
            .iter()
            .any(|c| c.seq == stored.seq && c.hash.as_slice() != stored.hash.as_slice())
            .then(|| "its hash is not the one checkpointed: the chain was rewritten".into())
    }
}

/// Where and how often the service writes checkpoints.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub file: PathBuf,
    pub every: Duration,
}

/// Appends the newest record's checkpoint to `checkpoints.file` each time the trail has grown,
/// and a last one at `stop`; a line at a time, synced, so that the file only ever grows.
pub fn keep_checkpoints(
    pool: PgPool,
    checkpoints: Checkpoints,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut written = None;
        let mut ticks = tokio::time::interval(checkpoints.every);
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                _ = ticks.tick() => false,
            };
            match checkpoint(&pool).await {
                Ok(Some(newest)) if Some(newest.seq) != written => {
                    match write_checkpoint(&checkpoints.file, newest).await {
                        Ok(()) => written = Some(newest.seq),
                        Err(error) => tracing::error!(
                            file = %checkpoints.file.display(), %error,
                            "could not write the audit checkpoint"
                        ),
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not read the audit trail's newest record");
                }
            }
            if stopping {
                return;
            }
        }
    })
}

async fn write_checkpoint(file: &std::path::Path, checkpoint: Checkpoint) -> std::io::Result<()> {
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .await?;
    out.write_all(format!("{checkpoint}\n").as_bytes()).await?;
    out.sync_all().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(hash: [u8; 32]) -> String {
        Checkpoint { seq: 0, hash }.to_string()[2..].to_owned()
    }

    /// The record format is pinned: records written before the chain was keyed (SHA-256) must
    /// still verify, and a keyed record is the HMAC of the same bytes (both figures from
    /// Python's hashlib and hmac on the documented layout).
    #[test]
    fn records_hash_as_they_always_have() {
        let record = Record {
            seq: 1,
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            actor: "cli (user root)",
            action: "key.create",
            target: "key 1",
            before: None,
            after: Some("{}"),
        };
        let trail = Trail::new(&[b'k'; 32]);
        assert_eq!(
            hex(trail.hash(&record, &GENESIS, false)),
            "919dd243e79f51087d96a1ba88899fb72af7a921681b48e2a5bf06b90c63d1ee"
        );
        assert_eq!(
            hex(trail.hash(&record, &GENESIS, true)),
            "6d16fbe0c6658ae587c4ca18e4d78f84b3edfd34ed62d98585d2283eaef0ba00"
        );
    }

    #[test]
    fn checkpoints_read_back_as_written() {
        let checkpoint = Checkpoint {
            seq: 42,
            hash: std::array::from_fn(|i| i as u8 * 7),
        };
        assert_eq!(Checkpoint::parse(&checkpoint.to_string()), Ok(checkpoint));
        assert!(Checkpoint::parse("42").is_err());
        assert!(Checkpoint::parse("42:abc").is_err());
    }
}
