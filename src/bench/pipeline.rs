//! `vigil bench pipeline`: the live pipeline on this machine, broker, Postgres, Redis and the
//! scoring service all local. It preloads a backlog of generated transactions and measures
//! the raw consume rate of the broker, then the scoring service (`vigil score`, a process of
//! its own) draining the backlog through scoring and the Postgres/Redis commit; then a paced
//! phase for producer-to-commit latency; then kill -9 of the scorer under that load and the
//! time to its first new commit; and the scorer's peak memory.

use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use vigil_common::kafka::{Cluster, ProducerConfig, produce_all, producer};
use vigil_common::prepare::{self, Prepared};
use vigil_ingest::read::{Read, RecordReader};
use vigil_schema::pan::PanTokenizer;
use vigil_schema::{Timestamp, Transaction, topics};

use super::service::Service;
use vigil_app::broker::DevBroker;
use vigil_app::progress;

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// Transactions preloaded and drained for the throughput figure (the embedded broker keeps
    /// about 5 MB of compressed batches a partition: at most 50,000 transactions a partition).
    #[arg(long, default_value_t = 400_000)]
    pub backlog: usize,
    /// Cards the generated transactions are spread over (active cards in the scorer).
    #[arg(long, default_value_t = 100_000)]
    pub cards: u32,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Transactions a second in the paced phase (latency and recovery).
    #[arg(long, default_value_t = 20_000)]
    pub rate: usize,
    /// Length of the paced phase, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: usize,
    /// Postgres server (a database `vigil_bench` is made anew there).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/vigil_bench")]
    pub postgres: String,
}

/// What the embedded broker keeps of a partition: librdkafka's mock cluster drops the oldest
/// batches beyond 5 MB.
const MAX_PER_PARTITION: usize = 50_000;

/// Seconds of paced load after the kill.
const RECOVERY_SECONDS: usize = 15;

pub fn run(args: &PipelineArgs) -> Result<()> {
    vigil_app::serve::init_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    anyhow::ensure!(
        args.backlog / args.partitions.max(1) as usize <= MAX_PER_PARTITION,
        "the embedded broker keeps about {MAX_PER_PARTITION} transactions a partition: use \
         --partitions {} or more for a backlog of {}",
        args.backlog.div_ceil(MAX_PER_PARTITION),
        args.backlog
    );
    let paced = args.rate * (args.seconds + RECOVERY_SECONDS);
    let records = load(args.backlog + paced, args.backlog, args.cards, args.rate)?;
    let (backlog, paced) = records.split_at(args.backlog);
    println!(
        "pipeline: {} transactions preloaded, then {} at {}/s; {} cards, {} partitions",
        backlog.len(),
        paced.len(),
        args.rate,
        args.cards,
        args.partitions
    );

    let broker = DevBroker::start(args.partitions)?;
    let brokers = broker.bootstrap_servers();
    runtime.block_on(fresh_database(&args.postgres))?;
    let producer = producer(&Cluster::at(brokers.clone()), &ProducerConfig::default())?;
    let started = Instant::now();
    runtime.block_on(produce_all(&producer, topics::TRANSACTIONS, backlog))?;
    let produce_rate = rate(backlog.len(), started.elapsed());
    println!("produce (idempotent, lz4, acks=all): {produce_rate:>9.0} tx/s");

    let consume_rate = raw_consume_rate(&brokers, backlog.len())?;
    println!("raw consume of the same broker:      {consume_rate:>9.0} tx/s");

    let offsets = Offsets::new(&runtime, &args.postgres)?;
    let mut scorer = spawn_scorer(&brokers, &args.postgres)?;
    let (throughput, drained) = offsets.drain_rate(backlog.len())?;
    println!(
        "scoring + commit, backlog drained:  {throughput:>9.0} tx/s ({:.2} of the raw consume rate; all {} in {:.1} s)",
        throughput / consume_rate,
        backlog.len(),
        drained.as_secs_f64()
    );
    let memory = scorer.peak_memory_mib()?;
    println!(
        "scorer peak memory at {} cards:     {memory:>9.0} MiB",
        args.cards
    );

    let before = scorer.metrics()?;
    let (latency_part, recovery_part) = paced.split_at(args.rate * args.seconds);
    pace(&runtime, &producer, latency_part, args.rate)?;
    offsets.wait_for(backlog.len() + latency_part.len())?;
    let after = scorer.metrics()?;
    let p50 = after.latency_quantile(&before, 0.5).unwrap_or(0.0);
    let p99 = after.latency_quantile(&before, 0.99).unwrap_or(0.0);
    let batches = after.batches - before.batches;
    println!(
        "producer-to-commit at {}/s:       p50 {:.0} ms, p99 {:.0} ms ({batches:.0} batches of {:.0} tx, {:.1} ms each)",
        args.rate,
        p50 * 1e3,
        p99 * 1e3,
        latency_part.len() as f64 / batches,
        (after.batch_seconds - before.batch_seconds) / batches * 1e3,
    );

    let recovery = std::thread::scope(|scope| -> Result<Duration> {
        let feeding = scope.spawn(|| pace(&runtime, &producer, recovery_part, args.rate));
        std::thread::sleep(Duration::from_secs(3));
        let killed_at = Instant::now();
        scorer.kill();
        let committed = offsets.committed()?;
        scorer = spawn_scorer(&brokers, &args.postgres)?;
        while offsets.committed()? <= committed {
            std::thread::sleep(Duration::from_millis(20));
        }
        let recovered = killed_at.elapsed();
        feeding.join().expect("the feeder does not panic")?;
        Ok(recovered)
    })?;
    println!(
        "kill -9 of the scorer under load:   first new commit after {:.1} s",
        recovery.as_secs_f64()
    );
    offsets.wait_for(records.len())?;
    scorer.kill();
    Ok(())
}

/// Generated transactions, prepared to produce, `n` of them, over `cards`. Their times are
/// made to follow one another at `rate` a second, the `backlog`-th at the time of the run, as a
/// live stream's would: the generator spreads them over days, and replayed as they are, a
/// second of the paced phase would carry hours of event time, which no live stream does (the
/// shared state is pooled every 5 s of event time, so that would pool it every few
/// transactions).
fn load(n: usize, backlog: usize, cards: u32, rate: usize) -> Result<Vec<Prepared>> {
    let dir = tempfile::tempdir()?;
    // The generator makes about 2.4 transactions a card a day.
    let days = (n as f64 / (f64::from(cards) * 2.4)).ceil().max(1.0) as u32;
    let summary = crate::generate::sample(dir.path(), days, cards, (cards / 20).max(100))?;
    let tokenizer = PanTokenizer::new(b"bench");
    let mut reader = RecordReader::open(&summary.transactions_path, &Transaction::FIELDS)?;
    let mut records = Vec::with_capacity(n);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let at = |i: usize| now_ms + (i as i64 - backlog as i64) * 1000 / rate.max(1) as i64;
    while records.len() < n {
        match reader.next::<Transaction>()? {
            Read::Record(mut tx) => {
                tx.occurred_at = Timestamp::from_unix_millis(at(records.len()), 0)
                    .map_err(anyhow::Error::msg)?;
                records.push(prepare::transaction(tx, &tokenizer));
            }
            Read::Bad(bad) => anyhow::bail!("generated line {} is bad: {}", bad.line, bad.message),
            Read::End => break,
        }
    }
    anyhow::ensure!(
        records.len() == n,
        "generated {} transactions, not {n}",
        records.len()
    );
    Ok(records)
}

async fn fresh_database(url: &str) -> Result<()> {
    vigil_app::migrate::drop_database(url).await?;
    vigil_app::migrate::migrate_postgres(url).await
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// Messages a second a plain consumer reads from the transactions topic (no processing).
fn raw_consume_rate(brokers: &str, n: usize) -> Result<f64> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vigil-bench-raw")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topics::TRANSACTIONS])?;
    let mut read = 0;
    let mut started = None;
    while read < n {
        if let Some(m) = consumer.poll(Duration::from_secs(5)) {
            m?;
            started.get_or_insert_with(Instant::now);
            read += 1;
        }
    }
    Ok(rate(n, started.map_or(Duration::ZERO, |s| s.elapsed())))
}

/// Produces `records` at `per_second`, in slices every 50 ms.
fn pace(
    runtime: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    records: &[Prepared],
    per_second: usize,
) -> Result<()> {
    let slice = (per_second / 20).max(1);
    let started = Instant::now();
    for (i, part) in records.chunks(slice).enumerate() {
        let due = Duration::from_millis(50 * i as u64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        runtime.block_on(produce_all(producer, topics::TRANSACTIONS, part))?;
    }
    Ok(())
}

/// The transactions committed, read from the offsets the service stores with its decisions.
struct Offsets<'r> {
    runtime: &'r tokio::runtime::Runtime,
    pool: sqlx::PgPool,
}

impl<'r> Offsets<'r> {
    fn new(runtime: &'r tokio::runtime::Runtime, url: &str) -> Result<Self> {
        let pool = runtime.block_on(sqlx::PgPool::connect(url))?;
        Ok(Self { runtime, pool })
    }

    fn committed(&self) -> Result<usize> {
        let sum: Option<i64> = self.runtime.block_on(
            sqlx::query_scalar(
                "SELECT sum(next_offset)::bigint FROM consumer_offsets WHERE topic = $1",
            )
            .bind(topics::TRANSACTIONS)
            .fetch_one(&self.pool),
        )?;
        Ok(sum.unwrap_or(0) as usize)
    }

    fn wait_for(&self, n: usize) -> Result<()> {
        while self.committed()? < n {
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The rate from the first tenth of `n` committed to all of it, and the time to all of it
    /// from the first commit.
    fn drain_rate(&self, n: usize) -> Result<(f64, Duration)> {
        let bar = progress::bar("draining", n as u64, "tx");
        let mut first = None;
        let mut tenth = None;
        loop {
            let done = self.committed()?;
            bar.set_position(done as u64);
            if done > 0 {
                first.get_or_insert((Instant::now(), done));
            }
            if done >= n / 10 {
                tenth.get_or_insert((Instant::now(), done));
            }
            if done >= n {
                bar.finish_and_clear();
                let (t, from) = tenth.expect("set on the way");
                let (start, _) = first.expect("set on the way");
                return Ok((rate(n - from, t.elapsed()), start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `vigil score` on the benchmark's broker and database.
fn spawn_scorer(brokers: &str, postgres: &str) -> Result<Service> {
    Service::spawn(
        "score",
        &[
            ("VIGIL__KAFKA__BROKERS", brokers),
            ("VIGIL__POSTGRES__URL", postgres),
            ("VIGIL__REDIS__PREFIX", "vigil_bench"),
            ("VIGIL__SCORING__GROUP", "vigil-bench"),
            ("VIGIL__SCORING__SESSION_TIMEOUT_MS", "3000"),
        ],
    )
}
