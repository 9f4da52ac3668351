//! Reading event files on their own threads: each reader parses its file into batches of engine
//! events (with their ids) and hands them over a bounded channel, so parsing runs beside scoring.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use anyhow::Result;
use vigil_common::prepare;
use vigil_engine::replay::{self, Labels};
use vigil_engine::{Event, LabelEvent};
use vigil_ingest::read::{BadRecord, Read, RecordReader};
use vigil_schema::pan::PanTokenizer;
use vigil_schema::{Label, Timestamp, Transaction};

const BATCH: usize = 4096;
/// Batches in flight per reader: bounds memory whatever the file size.
const IN_FLIGHT: usize = 8;

/// How the intake keys records, and into how many partitions: events read from files go to
/// the partition the live topics would hold them in. With the clock bound the scorer holds
/// records to (`scoring.max_ahead_secs`), here against the records that follow (see
/// [`Screen`]).
#[derive(Debug, Clone)]
pub struct Partitioner {
    pub tokenizer: PanTokenizer,
    pub partitions: u32,
    pub max_ahead_secs: u32,
}

impl Partitioner {
    /// Everything in one partition.
    pub fn one() -> Self {
        Self {
            tokenizer: PanTokenizer::new(b"unused: one partition"),
            partitions: 1,
            max_ahead_secs: vigil_scoring::service::ServiceConfig::default().max_ahead_secs,
        }
    }
}

/// Events parsed from one stretch of a file, with their ids, their partitions and the bad
/// lines met.
#[derive(Debug)]
pub struct Batch<E> {
    pub events: Vec<E>,
    pub partitions: Vec<u16>,
    ids: String,
    id_ends: Vec<u32>,
    pub bad: Vec<BadRecord>,
}

impl<E> Batch<E> {
    fn new() -> Self {
        Self {
            events: Vec::with_capacity(BATCH),
            partitions: Vec::with_capacity(BATCH),
            ids: String::new(),
            id_ends: Vec::with_capacity(BATCH),
            bad: vec![],
        }
    }

    fn push(&mut self, event: E, partition: u32, id: &str) {
        self.events.push(event);
        self.partitions.push(partition as u16);
        self.ids.push_str(id);
        self.id_ends.push(self.ids.len() as u32);
    }

    /// The id of event `i`.
    pub fn id(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            self.id_ends[i - 1] as usize
        };
        &self.ids[start..self.id_ends[i] as usize]
    }
}

pub type Feed<E> = Receiver<Result<Batch<E>>>;

/// Starts reading transactions from `path` on a thread of `scope`.
pub fn transactions<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    path: &Path,
    by: Partitioner,
) -> Result<Feed<Event>> {
    let reader = RecordReader::open(path, &Transaction::FIELDS)?;
    let screen = Screen::new("occurred_at", by.max_ahead_secs);
    Ok(spawn(scope, reader, screen, move |reader| {
        let step = match reader.next::<Transaction>()? {
            Read::Record(tx) => Step::Record(Held {
                at: tx.occurred_at.unix_seconds(),
                partition: prepare::transaction_partition(&tx, &by.tokenizer, by.partitions),
                id: tx.transaction_id.as_str().to_owned(),
                event: Event::from(&tx),
                line: 0,
            }),
            Read::Bad(bad) => Step::Bad(bad),
            Read::End => Step::End,
        };
        Ok(step.at_line(reader.line()))
    }))
}

/// Starts reading labels from `path` on a thread of `scope`.
fn labels<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    path: &Path,
    by: Partitioner,
) -> Result<Feed<LabelEvent>> {
    let reader = RecordReader::open(path, &Label::FIELDS)?;
    let screen = Screen::new("labelled_at", by.max_ahead_secs);
    Ok(spawn(scope, reader, screen, move |reader| {
        let step = match reader.next::<Label>()? {
            Read::Record(label) => Step::Record(Held {
                at: label.labelled_at.unix_seconds(),
                partition: prepare::label_partition(&label, &by.tokenizer, by.partitions),
                id: label.transaction_id.as_str().to_owned(),
                event: LabelEvent::from(&label),
                line: 0,
            }),
            Read::Bad(bad) => Step::Bad(bad),
            Read::End => Step::End,
        };
        Ok(step.at_line(reader.line()))
    }))
}

/// What one read gave.
enum Step<E> {
    Record(Held<E>),
    Bad(BadRecord),
    End,
}

impl<E> Step<E> {
    /// A record read on `line`.
    fn at_line(mut self, line: u64) -> Self {
        if let Step::Record(held) = &mut self {
            held.line = line;
        }
        self
    }
}

/// A record read and not yet let through, with its time in unix seconds.
struct Held<E> {
    at: i64,
    event: E,
    partition: u32,
    id: String,
    line: u64,
}

/// How many records after one are asked whether they follow it.
const FOLLOWERS: usize = 8;

/// Lets every record through but one dated far ahead of the records after it: a wrong clock,
/// which would hold the stream's event time there and make every record after it late. Live,
/// the scorer refuses a record dated more than `scoring.max_ahead_secs` after it was produced;
/// a file has no produce time, so here a record is refused when most of the [`FOLLOWERS`]
/// records after it are dated more than that before it. A quiet stretch in a sorted file is
/// followed by records after it, and passes.
struct Screen<E> {
    field: &'static str,
    max_ahead: i64,
    held: VecDeque<Held<E>>,
}

impl<E> Screen<E> {
    fn new(field: &'static str, max_ahead_secs: u32) -> Self {
        Self {
            field,
            max_ahead: i64::from(max_ahead_secs),
            held: VecDeque::with_capacity(FOLLOWERS + 1),
        }
    }

    /// Holds `record`; lets the oldest held through to `batch` once it has its followers.
    fn push(&mut self, record: Held<E>, batch: &mut Batch<E>) {
        self.held.push_back(record);
        if self.held.len() > FOLLOWERS {
            self.release(batch);
        }
    }

    /// Lets through what is held (at the end of the file).
    fn finish(&mut self, batch: &mut Batch<E>) {
        while !self.held.is_empty() {
            self.release(batch);
        }
    }

    fn release(&mut self, batch: &mut Batch<E>) {
        let first = self.held.pop_front().expect("a record held");
        let earlier = self
            .held
            .iter()
            .filter(|h| h.at < first.at - self.max_ahead)
            .count();
        if earlier * 2 <= self.held.len() {
            batch.push(first.event, first.partition, &first.id);
            return;
        }
        batch.bad.push(BadRecord {
            line: first.line,
            message: format!(
                "{} is more than {} s after {earlier} of the {} records that follow it: a wrong \
                 clock (`scoring.max_ahead_secs`); taken, it would make every record after it late",
                self.field,
                self.max_ahead,
                self.held.len()
            ),
        });
    }
}

/// Runs `read_one` on its own thread through `screen`, in batches.
fn spawn<'s, E: Send + 's>(
    scope: &'s std::thread::Scope<'s, '_>,
    mut reader: RecordReader,
    mut screen: Screen<E>,
    read_one: impl Fn(&mut RecordReader) -> Result<Step<E>> + Send + 's,
) -> Feed<E> {
    let (send, receive): (SyncSender<Result<Batch<E>>>, _) = sync_channel(IN_FLIGHT);
    scope.spawn(move || {
        loop {
            let mut batch = Batch::new();
            let mut more = true;
            while more && batch.events.len() < BATCH {
                match read_one(&mut reader) {
                    Ok(Step::Record(record)) => screen.push(record, &mut batch),
                    Ok(Step::Bad(bad)) => batch.bad.push(bad),
                    Ok(Step::End) => {
                        screen.finish(&mut batch);
                        more = false;
                    }
                    Err(e) => {
                        let _ = send.send(Err(e));
                        return;
                    }
                }
            }
            // A closed channel means the consumer stopped: stop reading too.
            if send.send(Ok(batch)).is_err() || !more {
                return;
            }
        }
    });
    receive
}

/// How many lines of a file were bad, with the first few shown on standard error as they come.
#[derive(Debug)]
pub struct BadLines {
    file: String,
    pub count: u64,
}

/// Bad lines shown one by one; the rest are only counted.
const SHOWN: u64 = 10;

impl BadLines {
    pub fn new(path: &Path) -> Self {
        Self {
            file: path.display().to_string(),
            count: 0,
        }
    }

    pub fn record(&mut self, bad: &BadRecord) {
        self.count += 1;
        if self.count <= SHOWN {
            eprintln!("{}:{}: skipped: {}", self.file, bad.line, bad.message);
        } else if self.count == SHOWN + 1 {
            eprintln!("{}: more bad lines; counting the rest", self.file);
        }
    }
}

/// Labels taken one at a time from a feed, with a look at the next one.
#[derive(Debug)]
pub struct LabelStream {
    feed: Option<Feed<LabelEvent>>,
    batch: Option<Batch<LabelEvent>>,
    next: usize,
    pub bad: Option<BadLines>,
}

impl LabelStream {
    pub fn new<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        path: Option<&Path>,
        by: Partitioner,
    ) -> Result<Self> {
        let feed = path.map(|p| labels(scope, p, by)).transpose()?;
        Ok(Self {
            feed,
            batch: None,
            next: 0,
            bad: path.map(BadLines::new),
        })
    }
}

/// The labels of a file, for [`vigil_engine::replay`] to merge into the transactions.
impl Labels for LabelStream {
    type Error = anyhow::Error;

    fn next_known_by(&mut self, time: Option<Timestamp>) -> Result<Option<(usize, LabelEvent)>> {
        loop {
            if let Some(batch) = &self.batch
                && let Some(&label) = batch.events.get(self.next)
            {
                let known = replay::known_by(&label, time);
                let partition = usize::from(batch.partitions[self.next]);
                self.next += usize::from(known);
                return Ok(known.then_some((partition, label)));
            }
            let Some(feed) = &self.feed else {
                return Ok(None);
            };
            match feed.recv() {
                Ok(batch) => {
                    let batch = batch?;
                    if let Some(bad) = &mut self.bad {
                        batch.bad.iter().for_each(|b| bad.record(b));
                    }
                    self.batch = Some(batch);
                    self.next = 0;
                }
                Err(_) => {
                    self.feed = None;
                    self.batch = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600;

    /// The times `screen` lets through of records at `times`, and the lines it refuses.
    fn screened(times: &[i64]) -> (Vec<i64>, Vec<u64>) {
        let mut screen = Screen::new("occurred_at", 3_600);
        let mut batch = Batch::new();
        for (i, &at) in times.iter().enumerate() {
            let held = Held {
                at,
                event: at,
                partition: 0,
                id: format!("t{i}"),
                line: i as u64 + 1,
            };
            screen.push(held, &mut batch);
        }
        screen.finish(&mut batch);
        (batch.events, batch.bad.iter().map(|b| b.line).collect())
    }

    #[test]
    fn a_record_far_ahead_of_those_after_it_is_refused_and_a_quiet_stretch_is_not() {
        let stream: Vec<i64> = (0..20).map(|i| i * 60).collect();
        // Dated years ahead, once and twice in a row, among records a minute apart.
        for outliers in [1, 2] {
            let mut times = stream.clone();
            for k in 0..outliers {
                times.insert(10 + k, 4_000_000_000);
            }
            let (passed, refused) = screened(&times);
            assert_eq!(passed, stream, "{outliers} outliers");
            assert_eq!(refused, (11..11 + outliers as u64).collect::<Vec<_>>());
        }
        // A night without payments is no wrong clock; nor is a dated-ahead last record.
        let mut quiet = stream.clone();
        quiet.extend((0..20).map(|i| 10 * HOUR + i * 60));
        quiet.push(100 * HOUR);
        assert_eq!(screened(&quiet), (quiet.clone(), vec![]));
    }
}
