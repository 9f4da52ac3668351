//! Replaying event files to the topics, as the payment systems would have posted them:
//! transactions and labels merged in event-time order (`occurred_at`, `labelled_at`), at a
//! chosen rate, each acknowledged by the broker.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;
use vigil_schema::pan::PanTokenizer;
use vigil_schema::{Label, Transaction, topics};

use crate::Result;
use crate::read::{BadRecord, Read, RecordReader};
use vigil_common::kafka::produce_all;
use vigil_common::prepare::{self, Prepared};

/// Records produced a round; also how often the rate is checked.
const CHUNK: usize = 1000;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub transactions: u64,
    pub labels: u64,
    /// Lines that break the contract, by file; skipped.
    pub bad: Vec<(String, BadRecord)>,
}

/// One file's records in order, each with its event time, ready to produce.
struct Stream {
    reader: RecordReader,
    is_label: bool,
    next: Option<(i64, Prepared)>,
}

impl Stream {
    fn open(path: &Path, is_label: bool) -> Result<Self> {
        let columns: &[&str] = if is_label {
            &Label::FIELDS
        } else {
            &Transaction::FIELDS
        };
        Ok(Self {
            reader: RecordReader::open(path, columns)?,
            is_label,
            next: None,
        })
    }

    /// Reads ahead to the next good record, reporting bad ones.
    fn advance(
        &mut self,
        tokenizer: &PanTokenizer,
        bad: &mut Vec<(String, BadRecord)>,
    ) -> Result<()> {
        loop {
            let read = if self.is_label {
                match self.reader.next::<Label>()? {
                    Read::Record(l) => {
                        Read::Record((l.labelled_at.unix_millis(), prepare::label(l, tokenizer)))
                    }
                    Read::Bad(b) => Read::Bad(b),
                    Read::End => Read::End,
                }
            } else {
                match self.reader.next::<Transaction>()? {
                    Read::Record(t) => Read::Record((
                        t.occurred_at.unix_millis(),
                        prepare::transaction(t, tokenizer),
                    )),
                    Read::Bad(b) => Read::Bad(b),
                    Read::End => Read::End,
                }
            };
            match read {
                Read::Record(record) => {
                    self.next = Some(record);
                    return Ok(());
                }
                Read::Bad(b) => bad.push((self.reader.path().display().to_string(), b)),
                Read::End => {
                    self.next = None;
                    return Ok(());
                }
            }
        }
    }
}

/// Produces the files' records at `rate` a second (0: as fast as the broker takes them);
/// `progress` is told how many records have been acknowledged so far.
pub async fn replay(
    producer: &FutureProducer,
    tokenizer: &PanTokenizer,
    transactions: &Path,
    labels: Option<&Path>,
    rate: u64,
    mut progress: impl FnMut(u64),
) -> Result<Replayed> {
    let mut done = Replayed::default();
    let mut streams = vec![Stream::open(transactions, false)?];
    if let Some(labels) = labels {
        streams.push(Stream::open(labels, true)?);
    }
    for s in &mut streams {
        s.advance(tokenizer, &mut done.bad)?;
    }
    let started = Instant::now();
    let mut chunk: [Vec<Prepared>; 2] = [Vec::with_capacity(CHUNK), Vec::new()];
    // The stream whose next record is earliest; transactions first on a tie.
    while let Some(i) = (0..streams.len())
        .filter(|&i| streams[i].next.is_some())
        .min_by_key(|&i| streams[i].next.as_ref().map(|n| n.0))
    {
        let (_, record) = streams[i].next.take().expect("filtered on is_some");
        chunk[usize::from(streams[i].is_label)].push(record);
        streams[i].advance(tokenizer, &mut done.bad)?;
        if chunk[0].len() + chunk[1].len() == CHUNK {
            flush(producer, &mut chunk, &mut done).await?;
            progress(done.transactions + done.labels);
            pace(started, done.transactions + done.labels, rate).await;
        }
    }
    flush(producer, &mut chunk, &mut done).await?;
    progress(done.transactions + done.labels);
    Ok(done)
}

async fn flush(
    producer: &FutureProducer,
    chunk: &mut [Vec<Prepared>; 2],
    done: &mut Replayed,
) -> Result<()> {
    produce_all(producer, topics::TRANSACTIONS, &chunk[0]).await?;
    produce_all(producer, topics::LABELS, &chunk[1]).await?;
    done.transactions += chunk[0].len() as u64;
    done.labels += chunk[1].len() as u64;
    chunk[0].clear();
    chunk[1].clear();
    Ok(())
}

/// Sleeps until `sent` records at `rate` a second would be due.
async fn pace(started: Instant, sent: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}
