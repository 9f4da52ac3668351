//! Reading event files on their own threads: each reader parses its file into batches of engine
//! events (with their ids) and hands them over a bounded channel, so parsing runs beside scoring.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use anyhow::Result;
use vigil_engine::replay::{self, Labels};
use vigil_engine::{Event, LabelEvent};
use vigil_ingest::prepare;
use vigil_ingest::read::{BadRecord, Read, RecordReader};
use vigil_schema::pan::PanTokenizer;
use vigil_schema::{Label, Timestamp, Transaction};

const BATCH: usize = 4096;
/// Batches in flight per reader: bounds memory whatever the file size.
const IN_FLIGHT: usize = 8;

/// How the intake keys records, and into how many partitions: events read from files go to
/// the partition the live topics would hold them in.
#[derive(Clone)]
pub struct Partitioner {
    pub tokenizer: PanTokenizer,
    pub partitions: u32,
}

impl Partitioner {
    /// Everything in one partition.
    pub fn one() -> Self {
        Self {
            tokenizer: PanTokenizer::new(b"unused: one partition"),
            partitions: 1,
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
    Ok(spawn(scope, reader, move |reader, batch| {
        let read = reader.next::<Transaction>()?;
        Ok(keep(read, batch, |tx, batch| {
            let partition = prepare::transaction_partition(&tx, &by.tokenizer, by.partitions);
            batch.push(Event::from(&tx), partition, tx.transaction_id.as_str());
        }))
    }))
}

/// Starts reading labels from `path` on a thread of `scope`.
fn labels<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    path: &Path,
    by: Partitioner,
) -> Result<Feed<LabelEvent>> {
    let reader = RecordReader::open(path, &Label::FIELDS)?;
    Ok(spawn(scope, reader, move |reader, batch| {
        let read = reader.next::<Label>()?;
        Ok(keep(read, batch, |label, batch| {
            let partition = prepare::label_partition(&label, &by.tokenizer, by.partitions);
            batch.push(
                LabelEvent::from(&label),
                partition,
                label.transaction_id.as_str(),
            );
        }))
    }))
}

/// Puts what one read gave into `batch` (a record through `push`, a bad line with the bad
/// ones); false at the end of the file.
fn keep<T, E>(read: Read<T>, batch: &mut Batch<E>, push: impl FnOnce(T, &mut Batch<E>)) -> bool {
    match read {
        Read::Record(record) => push(record, batch),
        Read::Bad(bad) => batch.bad.push(bad),
        Read::End => return false,
    }
    true
}

/// Runs `read_one` (which returns false at the end of the file) on its own thread, in batches.
fn spawn<'s, E: Send + 's>(
    scope: &'s std::thread::Scope<'s, '_>,
    mut reader: RecordReader,
    read_one: impl Fn(&mut RecordReader, &mut Batch<E>) -> Result<bool> + Send + 's,
) -> Feed<E> {
    let (send, receive): (SyncSender<Result<Batch<E>>>, _) = sync_channel(IN_FLIGHT);
    scope.spawn(move || {
        loop {
            let mut batch = Batch::new();
            let mut more = true;
            while more && batch.events.len() < BATCH {
                match read_one(&mut reader, &mut batch) {
                    Ok(m) => more = m,
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
