//! Feature vectors of scored transactions, kept until their label arrives (or the label horizon
//! passes), so that the model learns from exactly what it scored with.
//!
//! Entries are kept in scoring order in fixed-size chunks; an index finds one by transaction key.
//! Because event time mostly rises with scoring order, the oldest entries are at the front, where
//! maturity (implicit genuine labels) and the horizon are applied. Chunks are never copied as the
//! store grows (a `VecDeque` of a million entries would copy them all at each doubling), and the
//! chunk emptied at the front is reused at the back.
//!
//! A full chunk's feature vectors never change (only what is known of its entries does), so a
//! snapshot leaves them out of the store's state and saves them apart, each chunk once
//! ([`PendingStore::full_chunks`], [`PendingStore::restore`]).

use serde::{Deserialize, Serialize, Serializer};
use std::collections::VecDeque;
use std::sync::Arc;

use vigil_models::FeatureVector;

use super::index::KeyIndex;

/// What is known of a pending transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Known {
    Nothing,
    Fraud,
    Genuine,
    /// Taken as genuine at maturity, without a label.
    AssumedGenuine,
}

/// A pending transaction, without its feature vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub transaction: u64,
    pub merchant: u64,
    pub amount_minor: f32,
    pub occurred_at: i64,
    pub known: Known,
}

const CHUNK: usize = 4096;

/// One stretch of the store: the small records and, apart, their feature vectors, so that the
/// per-event checks at the front read 32 bytes an entry instead of 370.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "(Vec<Pending>, Vec<FeatureVector>)")]
struct Chunk {
    entries: Vec<Pending>,
    features: Features,
}

/// A chunk's feature vectors. Those of a full chunk never change: they are shared, so that
/// cloning the store for a snapshot copies only the entries and the chunk that fills.
#[derive(Debug, Clone)]
enum Features {
    Filling(Vec<FeatureVector>),
    Full(Arc<Vec<FeatureVector>>),
}

impl Features {
    fn as_slice(&self) -> &[FeatureVector] {
        match self {
            Features::Filling(v) => v,
            Features::Full(v) => v,
        }
    }
}

impl Chunk {
    fn new() -> Self {
        Self {
            entries: Vec::with_capacity(CHUNK),
            features: Features::Filling(Vec::with_capacity(CHUNK)),
        }
    }

    fn is_full(&self) -> bool {
        self.entries.len() == CHUNK
    }

    fn push(&mut self, entry: Pending, features: &FeatureVector) {
        self.entries.push(entry);
        let Features::Filling(filling) = &mut self.features else {
            unreachable!("only a chunk with room is pushed to");
        };
        filling.push(*features);
        if filling.len() == CHUNK {
            self.features = Features::Full(Arc::new(std::mem::take(filling)));
        }
    }

    /// The chunk emptied for reuse, unless a clone still shares its vectors.
    fn emptied(mut self) -> Option<Self> {
        let Features::Full(full) = self.features else {
            return None;
        };
        let mut features = Arc::into_inner(full)?;
        features.clear();
        self.entries.clear();
        self.features = Features::Filling(features);
        Some(self)
    }
}

/// Serialized without the vectors of a full chunk: they are saved apart.
impl Serialize for Chunk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let features = match &self.features {
            Features::Filling(v) => v.as_slice(),
            Features::Full(_) => &[],
        };
        (&self.entries, features).serialize(serializer)
    }
}

/// A full chunk comes back without its vectors, until [`PendingStore::restore`].
impl From<(Vec<Pending>, Vec<FeatureVector>)> for Chunk {
    fn from((entries, features): (Vec<Pending>, Vec<FeatureVector>)) -> Self {
        let features = if entries.len() == CHUNK {
            Features::Full(Arc::new(features))
        } else {
            Features::Filling(features)
        };
        Self { entries, features }
    }
}

/// The feature vectors of a full chunk as saved apart, with the sequence number of its first
/// entry, which restoring checks.
#[derive(Serialize, Deserialize)]
struct SavedChunk<'a> {
    first: u64,
    features: std::borrow::Cow<'a, [FeatureVector]>,
}

/// The sequence number whose low 32 bits are `low`, among the 2^32 from `first` on.
fn seq_from_low(first: u64, low: u32) -> u64 {
    first + u64::from(low.wrapping_sub(first as u32))
}

/// Whether the entry at sequence number `seq` of `chunks`, the first of which starts at `base`,
/// is `transaction`'s.
fn holds(chunks: &VecDeque<Chunk>, base: u64, seq: u64, transaction: u64) -> bool {
    seq.checked_sub(base)
        .map(|offset| offset as usize)
        .and_then(|offset| chunks.get(offset / CHUNK)?.entries.get(offset % CHUNK))
        .is_some_and(|entry| entry.transaction == transaction)
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PendingStore {
    /// Entries in sequence order; every chunk is full but the last.
    chunks: VecDeque<Chunk>,
    /// Sequence number of the first entry of `chunks[0]`.
    base: u64,
    /// Entries at the start of `chunks[0]` that are gone.
    gone: usize,
    len: usize,
    /// Sequence number of the first entry not yet checked for maturity.
    maturity_cursor: u64,
    /// Each pending transaction's sequence number, as its low 32 bits (the store holds fewer
    /// than 2^32 entries, so they name one). Left out of snapshots: it is the entries' keys
    /// again, indexed anew on restore.
    #[serde(skip)]
    index: KeyIndex,
    /// An emptied chunk, kept for the next one needed.
    #[serde(skip)]
    spare: Option<Chunk>,
    /// Entries pushed out by the capacity bound before their horizon.
    pub evicted_early: u64,
}

impl PendingStore {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Sequence number of the oldest entry kept.
    fn first(&self) -> u64 {
        self.base + self.gone as u64
    }

    fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        if seq < self.first() || seq >= self.first() + self.len as u64 {
            return None;
        }
        let offset = (seq - self.base) as usize;
        Some((offset / CHUNK, offset % CHUNK))
    }

    /// Claims the next place for `transaction`, to be filled by [`Self::push`] before anything
    /// else is done with the store. Returns false for a transaction already pending. One probe
    /// serves both the duplicate check and the insert.
    pub fn claim(&mut self, transaction: u64) -> bool {
        self.claim_at(transaction, self.first() + self.len as u64)
    }

    /// Gives up the place [`Self::claim`] took for `transaction`, whose vector is not kept.
    pub fn unclaim(&mut self, transaction: u64) {
        let seq = self.first() + self.len as u64;
        self.index.remove(transaction, seq as u32);
    }

    /// Starts loading the index's line for `transaction` ([`super::prefetch`]).
    pub fn prefetch_index(&self, transaction: u64) {
        self.index.prefetch(transaction);
    }

    /// Starts loading the index line of an entry that leaves a few transactions from now,
    /// pushed out by `capacity` or past `expire_before`: a long-running engine removes one for
    /// every one it keeps, each from a random place in the index.
    pub fn prefetch_leaving(&self, capacity: usize, expire_before: i64) {
        const AHEAD: u64 = 2;
        let Some((c, i)) = self.locate(self.first() + AHEAD) else {
            return;
        };
        let entry = &self.chunks[c].entries[i];
        if self.len + AHEAD as usize >= capacity || entry.occurred_at < expire_before {
            self.index.prefetch(entry.transaction);
        }
    }

    fn claim_at(&mut self, transaction: u64, seq: u64) -> bool {
        let first = self.first();
        let (chunks, base) = (&self.chunks, self.base);
        self.index.insert(transaction, seq as u32, |low| {
            holds(chunks, base, seq_from_low(first, low), transaction)
        })
    }

    fn seq_of(&self, transaction: u64) -> Option<u64> {
        let low = self.index.get(transaction, |low| {
            let seq = seq_from_low(self.first(), low);
            holds(&self.chunks, self.base, seq, transaction)
        })?;
        Some(seq_from_low(self.first(), low))
    }

    /// Keeps `entry` and its features (its transaction was claimed), pushing out the oldest when
    /// `capacity` is reached.
    pub fn push(&mut self, entry: Pending, features: &FeatureVector, capacity: usize) {
        debug_assert_eq!(self.index.len(), self.len + 1, "pushed as claimed");
        if self.chunks.back().is_none_or(Chunk::is_full) {
            let chunk = self.spare.take().unwrap_or_else(Chunk::new);
            self.chunks.push_back(chunk);
        }
        self.chunks
            .back_mut()
            .expect("a chunk with room was just ensured")
            .push(entry, features);
        self.len += 1;
        while self.len > capacity.max(1) {
            self.pop_front();
            self.evicted_early += 1;
        }
    }

    /// The pending transaction and the features it was scored with.
    pub fn get_mut(&mut self, transaction: u64) -> Option<(&mut Pending, &FeatureVector)> {
        let (c, i) = self.locate(self.seq_of(transaction)?)?;
        let chunk = &mut self.chunks[c];
        Some((&mut chunk.entries[i], &chunk.features.as_slice()[i]))
    }

    fn front(&self) -> Option<&Pending> {
        (self.len > 0).then(|| &self.chunks[0].entries[self.gone])
    }

    fn pop_front(&mut self) {
        let Some(front) = self.front() else { return };
        let transaction = front.transaction;
        self.index.remove(transaction, self.first() as u32);
        self.gone += 1;
        self.len -= 1;
        if self.gone == CHUNK {
            let emptied = self.chunks.pop_front().expect("the front chunk exists");
            self.spare = emptied.emptied();
            self.base += CHUNK as u64;
            self.gone = 0;
        }
        self.maturity_cursor = self.maturity_cursor.max(self.first());
    }

    /// The sequence number of the first entry of the oldest chunk: a snapshot of this store needs
    /// the full chunks from there on.
    pub fn chunks_from(&self) -> u64 {
        self.base
    }

    /// The sequence number after the last full chunk.
    pub fn full_chunks_to(&self) -> u64 {
        let full = self.chunks.iter().take_while(|c| c.is_full()).count();
        self.base + (full * CHUNK) as u64
    }

    /// The full chunks whose first entry is at sequence number `from` or later, each as its
    /// first sequence number and its vectors serialized, for [`Self::restore`].
    pub fn full_chunks(&self, from: u64) -> impl Iterator<Item = (u64, Vec<u8>)> + '_ {
        (self.base..)
            .step_by(CHUNK)
            .zip(self.chunks.iter().take_while(|c| c.is_full()))
            .filter(move |&(first, _)| first >= from)
            .map(|(first, chunk)| {
                let saved = SavedChunk {
                    first,
                    features: std::borrow::Cow::Borrowed(chunk.features.as_slice()),
                };
                let bytes = postcard::to_stdvec(&saved).expect("writing to memory cannot fail");
                (first, bytes)
            })
    }

    /// Completes a store read from a snapshot: gives its full chunks their vectors back, from
    /// `saved`, which finds a chunk's bytes ([`Self::full_chunks`]) by its first sequence number,
    /// and indexes its entries.
    pub fn restore<'a>(&mut self, saved: impl Fn(u64) -> Option<&'a [u8]>) -> Result<(), String> {
        for (first, chunk) in (self.base..).step_by(CHUNK).zip(self.chunks.iter_mut()) {
            if !chunk.is_full() {
                continue;
            }
            let bytes = saved(first).ok_or_else(|| format!("pending chunk {first} is missing"))?;
            let read: SavedChunk =
                postcard::from_bytes(bytes).map_err(|e| format!("pending chunk {first}: {e}"))?;
            if read.first != first || read.features.len() != CHUNK {
                return Err(format!(
                    "pending chunk {first} holds {} vectors from {}",
                    read.features.len(),
                    read.first
                ));
            }
            chunk.features = Features::Full(Arc::new(read.features.into_owned()));
        }
        self.index = KeyIndex::default();
        for seq in self.first()..self.first() + self.len as u64 {
            let (c, i) = self.locate(seq).expect("a kept entry");
            self.claim_at(self.chunks[c].entries[i].transaction, seq);
        }
        Ok(())
    }

    /// Calls `on_mature` for each entry, in order, that occurred before `mature_before` and was
    /// not checked yet; the callback may change what is known of it.
    pub fn mature(
        &mut self,
        mature_before: i64,
        mut on_mature: impl FnMut(&mut Pending, &FeatureVector),
    ) {
        while let Some((c, i)) = self.locate(self.maturity_cursor) {
            let chunk = &mut self.chunks[c];
            if chunk.entries[i].occurred_at >= mature_before {
                break;
            }
            on_mature(&mut chunk.entries[i], &chunk.features.as_slice()[i]);
            self.maturity_cursor += 1;
        }
    }

    /// Every entry kept, oldest first, with its vector.
    pub fn iter(&self) -> impl Iterator<Item = (&Pending, &FeatureVector)> {
        self.chunks
            .iter()
            .flat_map(|c| c.entries.iter().zip(c.features.as_slice()))
            .skip(self.gone)
    }

    /// Drops entries that occurred before `expire_before` from the front.
    pub fn expire(&mut self, expire_before: i64) {
        while self.front().is_some_and(|e| e.occurred_at < expire_before) {
            self.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(transaction: u64, occurred_at: i64) -> Pending {
        Pending {
            transaction,
            merchant: 1,
            amount_minor: 1.0,
            occurred_at,
            known: Known::Nothing,
        }
    }

    fn features(v: f32) -> FeatureVector {
        let mut x = FeatureVector::default();
        x.0[0] = v;
        x
    }

    /// Claims and keeps transactions `ids`, each at the time of its id, with its id as its first
    /// feature.
    fn keep(store: &mut PendingStore, ids: std::ops::Range<u64>, capacity: usize) {
        for i in ids {
            store.claim(i);
            store.push(entry(i, i as i64), &features(i as f32), capacity);
        }
    }

    #[test]
    fn keeps_finds_matures_and_expires() {
        let mut store = PendingStore::default();
        for i in 0..5 {
            assert!(store.claim(i));
            store.push(entry(i, i as i64 * 10), &features(i as f32), 100);
        }
        assert!(!store.claim(3), "a transaction is kept once");
        store.get_mut(2).unwrap().0.known = Known::Fraud;

        let mut matured = vec![];
        store.mature(25, |e, _| matured.push(e.transaction));
        assert_eq!(matured, vec![0, 1, 2]);
        store.mature(25, |e, _| matured.push(e.transaction));
        assert_eq!(matured.len(), 3, "each entry matures once");

        store.expire(15);
        assert_eq!(store.len(), 3);
        assert!(store.get_mut(1).is_none());
        let (kept, x) = store.get_mut(2).unwrap();
        assert_eq!(
            (kept.known, x.0[0]),
            (Known::Fraud, 2.0),
            "the vector stays with its entry"
        );
    }

    #[test]
    fn iterates_what_is_kept_in_order() {
        let mut store = PendingStore::default();
        keep(&mut store, 0..(CHUNK as u64 + 10), usize::MAX);
        store.expire(5);
        let kept: Vec<i64> = store.iter().map(|(e, _)| e.occurred_at).collect();
        assert_eq!(kept, (5..(CHUNK as i64 + 10)).collect::<Vec<_>>());
        assert!(store.iter().all(|(e, x)| x.0[0] == e.transaction as f32));
    }

    #[test]
    fn crosses_chunks() {
        let mut store = PendingStore::default();
        let n = 3 * CHUNK as u64 + 17;
        keep(&mut store, 0..n, usize::MAX);
        store.expire(CHUNK as i64 + 5);
        assert_eq!(store.len() as u64, n - CHUNK as u64 - 5);
        assert!(store.get_mut(CHUNK as u64 + 4).is_none());
        for i in [CHUNK as u64 + 5, 2 * CHUNK as u64, n - 1] {
            let (kept, x) = store.get_mut(i).unwrap();
            assert_eq!((kept.transaction, x.0[0]), (i, i as f32));
        }
        let mut matured = 0;
        store.mature(n as i64, |_, _| matured += 1);
        assert_eq!(matured, store.len());
        assert_eq!(store.chunks.len(), 3, "the emptied front chunk was let go");
    }

    #[test]
    fn a_clone_shares_full_chunks_and_keeps_them_when_the_original_lets_go() {
        let mut store = PendingStore::default();
        let n = 2 * CHUNK as u64 + 1;
        keep(&mut store, 0..n, usize::MAX);
        let mut clone = store.clone();
        let Features::Full(shared) = &store.chunks[0].features else {
            panic!("the first chunk is full");
        };
        assert_eq!(Arc::strong_count(shared), 2, "shared, not copied");

        store.expire(CHUNK as i64);
        assert!(
            store.spare.is_none(),
            "a chunk the clone holds is not reused"
        );
        let (kept, x) = clone.get_mut(3).unwrap();
        assert_eq!((kept.transaction, x.0[0]), (3, 3.0));
        drop(clone);
        store.expire(2 * CHUNK as i64);
        assert!(store.spare.is_some(), "a chunk no clone holds is reused");
        keep(&mut store, n..n + CHUNK as u64, usize::MAX);
        let (kept, x) = store.get_mut(n + 5).unwrap();
        assert_eq!((kept.transaction, x.0[0]), (n + 5, (n + 5) as f32));
    }

    #[test]
    fn finds_entries_past_two_to_the_32_transactions() {
        let start = u64::from(u32::MAX) - 10;
        let mut store = PendingStore {
            base: start,
            maturity_cursor: start,
            ..PendingStore::default()
        };
        keep(&mut store, 0..30, usize::MAX);
        store.expire(5);
        assert!(!store.claim(20), "still pending");
        assert!(store.get_mut(4).is_none());
        for i in 5..30 {
            let (kept, x) = store.get_mut(i).unwrap();
            assert_eq!((kept.transaction, x.0[0]), (i, i as f32));
        }
    }

    #[test]
    fn capacity_bounds_memory() {
        let mut store = PendingStore::default();
        keep(&mut store, 0..10, 4);
        assert_eq!((store.len(), store.evicted_early), (4, 6));
        assert!(store.get_mut(5).is_none() && store.get_mut(6).is_some());
        let mut matured = vec![];
        store.mature(100, |e, _| matured.push(e.transaction));
        assert_eq!(matured, vec![6, 7, 8, 9], "evicted entries never mature");
    }
}
