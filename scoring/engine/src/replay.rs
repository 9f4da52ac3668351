//! Replaying a recorded stream through an engine as the live service met it: transactions in
//! event-time order, each label learned just before the first transaction later than it (so
//! that no score sees a label from its future), every event in its partition, and the memory
//! the next two transactions need asked for before each is scored. The backtest, training
//! data from files and the benchmarks all drive the engine through [`replay`].

use vigil_schema::Timestamp;

use crate::{Decision, Engine, Event, LabelEvent, LabelOutcome};

/// Where a replay's labels come from: in `labelled_at` order, each with its partition.
pub trait Labels {
    type Error;

    /// The next label, if it was known by `time` (whatever its time when `None`).
    fn next_known_by(
        &mut self,
        time: Option<Timestamp>,
    ) -> Result<Option<(usize, LabelEvent)>, Self::Error>;
}

/// Labels held in memory.
impl<I: Iterator<Item = (usize, LabelEvent)>> Labels for std::iter::Peekable<I> {
    type Error = std::convert::Infallible;

    fn next_known_by(
        &mut self,
        time: Option<Timestamp>,
    ) -> Result<Option<(usize, LabelEvent)>, Self::Error> {
        Ok(self.next_if(|(_, l)| known_by(l, time)))
    }
}

/// Whether `label` was known by `time`.
pub fn known_by(label: &LabelEvent, time: Option<Timestamp>) -> bool {
    time.is_none_or(|t| label.labelled_at.unix_millis() <= t.unix_millis())
}

/// What a driver does around the engine's work; every method but `scored` does nothing unless
/// implemented.
pub trait Observer {
    type Error;

    /// Before transaction `at` is scored, once its labels are learned: a champion's hand-over,
    /// a retraining.
    fn before(&mut self, _engine: &mut Engine, _at: Timestamp) -> Result<(), Self::Error> {
        Ok(())
    }

    /// After a label is learned.
    fn learned(&mut self, _label: &LabelEvent, _outcome: LabelOutcome) {}

    /// After `event` is scored (`engine.features()` holds its vector).
    fn scored(&mut self, event: &Event, engine: &Engine, decision: Decision);
}

/// Scores `transactions` (in event-time order, transaction `i` in partition `partitions[i]`),
/// learning each label of `labels` known by a transaction's time just before it.
pub fn replay<L, O>(
    engine: &mut Engine,
    labels: &mut L,
    transactions: &[Event],
    partitions: &[u16],
    observer: &mut O,
) -> Result<(), O::Error>
where
    L: Labels,
    O: Observer,
    O::Error: From<L::Error>,
{
    let routed = |i: usize| Some((usize::from(*partitions.get(i)?), transactions.get(i)?));
    for (i, event) in transactions.iter().enumerate() {
        learn_known_by(engine, labels, Some(event.occurred_at), observer)?;
        observer.before(engine, event.occurred_at)?;
        engine.prefetch(routed(i + 1), routed(i + 2));
        let decision = engine.score_in(usize::from(partitions[i]), event);
        observer.scored(event, engine, decision);
    }
    Ok(())
}

/// Learns the labels left once every transaction is scored.
pub fn finish<L, O>(engine: &mut Engine, labels: &mut L, observer: &mut O) -> Result<(), O::Error>
where
    L: Labels,
    O: Observer,
    O::Error: From<L::Error>,
{
    learn_known_by(engine, labels, None, observer)
}

fn learn_known_by<L, O>(
    engine: &mut Engine,
    labels: &mut L,
    time: Option<Timestamp>,
    observer: &mut O,
) -> Result<(), O::Error>
where
    L: Labels,
    O: Observer,
    O::Error: From<L::Error>,
{
    while let Some((partition, label)) = labels.next_known_by(time)? {
        let outcome = engine.learn_in(partition, &label);
        observer.learned(&label, outcome);
    }
    Ok(())
}

/// A stream held in memory, for the benchmarks: transactions in event-time order, all in the
/// first partition, and labels in `labelled_at` order.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub transactions: &'a [Event],
    pub labels: &'a [(usize, LabelEvent)],
}

impl Recorded<'_> {
    /// The stream before transaction `at` and from it on; labels known by the last
    /// transaction before go with the first part, as a replay learns them.
    pub fn split_at(self, at: usize) -> (Self, Self) {
        let (first, second) = self.transactions.split_at(at);
        let last = first.last().map(|e| e.occurred_at);
        let known = match last {
            Some(t) => self.labels.partition_point(|(_, l)| known_by(l, Some(t))),
            None => 0,
        };
        let (before, after) = self.labels.split_at(known);
        (
            Self {
                transactions: first,
                labels: before,
            },
            Self {
                transactions: second,
                labels: after,
            },
        )
    }

    /// Replays this stretch of the stream through `engine`; labels after its last transaction
    /// are left for the next.
    pub fn replay<O: Observer>(self, engine: &mut Engine, observer: &mut O) -> Result<(), O::Error>
    where
        O::Error: From<std::convert::Infallible>,
    {
        let partitions = vec![0; self.transactions.len()];
        let mut labels = self.labels.iter().copied().peekable();
        replay(
            engine,
            &mut labels,
            self.transactions,
            &partitions,
            observer,
        )
    }
}
