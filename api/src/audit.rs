//! The audit trail: every state-changing call appends a record (who, what, when, before,
//! after) in the same transaction as the change. Each record's hash covers its fields and the
//! previous record's hash, so that changing, removing or reordering any record breaks the chain
//! from there on; [`verify`] walks it and names the first record that does not hold.
//! Appends are serialized by a transaction-scoped advisory lock, which keeps `seq` gapless.

use chrono::{DateTime, SubsecRound, Utc};
use futures_util::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

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

/// Appends `change` to the trail, within the caller's transaction.
pub async fn append(tx: &mut PgConnection, change: Change<'_>) -> sqlx::Result<i64> {
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
    let hash = record.hash(&prev_hash);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, target, before, after, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
    /// SHA-256 of the previous hash and each field, length-prefixed so that no two records
    /// serialize alike.
    fn hash(&self, prev_hash: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(prev_hash);
        h.update(self.seq.to_le_bytes());
        h.update(self.at.timestamp_micros().to_le_bytes());
        for field in [
            Some(self.actor),
            Some(self.action),
            Some(self.target),
            self.before,
            self.after,
        ] {
            match field {
                None => h.update([0]),
                Some(text) => {
                    h.update([1]);
                    h.update((text.len() as u64).to_le_bytes());
                    h.update(text.as_bytes());
                }
            }
        }
        h.finalize().into()
    }
}

/// What a walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every record holds.
    Intact { records: i64 },
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

/// Walks the whole chain in order; each of `checkpoints` must be a record of it, with the hash
/// it had when the checkpoint was taken.
pub async fn verify(pool: &PgPool, checkpoints: &[Checkpoint]) -> sqlx::Result<Verdict> {
    type Row = (
        i64,
        DateTime<Utc>,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Vec<u8>,
        Vec<u8>,
    );
    let mut rows = sqlx::query_as::<_, Row>(
        "SELECT seq, at, actor, action, target, before, after, prev_hash, hash
         FROM audit_log ORDER BY seq",
    )
    .fetch(pool);
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_vec();
    while let Some((seq, at, actor, action, target, before, after, stored_prev, hash)) =
        rows.try_next().await?
    {
        let broken = |reason: String| Ok(Verdict::Broken { seq, reason });
        if seq != expected_seq {
            return Ok(Verdict::Broken {
                seq: expected_seq,
                reason: format!("record {expected_seq} is missing (the next is {seq})"),
            });
        }
        if stored_prev != prev_hash {
            return broken("its prev_hash is not the previous record's hash".into());
        }
        let record = Record {
            seq,
            at,
            actor: &actor,
            action: &action,
            target: &target,
            before: before.as_deref(),
            after: after.as_deref(),
        };
        if record.hash(&prev_hash).as_slice() != hash.as_slice() {
            return broken("its fields do not match its hash: the record was changed".into());
        }
        if checkpoints
            .iter()
            .any(|c| c.seq == seq && c.hash.as_slice() != hash.as_slice())
        {
            return broken("its hash is not the one checkpointed: the chain was rewritten".into());
        }
        prev_hash = hash;
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
    Ok(Verdict::Intact { records })
}

#[cfg(test)]
mod tests {
    use super::*;

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
