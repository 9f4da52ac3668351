//! `vigil bench pipeline`: the live pipeline on this machine, broker, Postgres, Redis and the
//! scoring service all local. It preloads a backlog of generated transactions and measures
//! the raw consume rate of the broker, then the scoring service (`vigil score`, a process of
//! its own) draining the backlog through scoring and the Postgres/Redis commit; then a paced
//! phase for producer-to-commit latency; then kill -9 of the scorer under that load and the
//! time to its first new commit; the scorer's peak memory; and last, once the snapshots that
//! load asked for are written, payments posted one a request through `vigil ingest` with
//! `?wait=`, as a payment system asks for its decisions.

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
    /// Payments a second posted through the intake with `?wait=`, one a request, in the last
    /// phase (decision in the response).
    #[arg(long, default_value_t = 2_000)]
    pub wait_rate: usize,
    /// Length of the decision-in-the-response phase, in seconds.
    #[arg(long, default_value_t = 10)]
    pub wait_seconds: usize,
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
    let waited = args.wait_rate * args.wait_seconds;
    let (records, last_event) = load(
        args.backlog + paced + waited,
        args.backlog,
        args.cards,
        args.rate,
    )?;
    let (backlog, rest) = records.split_at(args.backlog);
    let (paced, waited) = rest.split_at(paced);
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

    let mut restarted_at = None;
    let recovery = std::thread::scope(|scope| -> Result<Duration> {
        let feeding = scope.spawn(|| pace(&runtime, &producer, recovery_part, args.rate));
        std::thread::sleep(Duration::from_secs(3));
        let killed_at = Instant::now();
        scorer.kill();
        let committed = offsets.committed()?;
        restarted_at = Some(offsets.now()?);
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
    offsets.wait_for(backlog.len() + paced.len())?;

    // In a steady state: once the snapshots the load before asked for are written.
    offsets.wait_for_snapshots(&restarted_at.expect("set by the restart"))?;
    let intake = spawn_intake(&brokers, &args.postgres)?;
    let key = runtime.block_on(ingest_key(&args.postgres))?;
    // Stamped as they are posted: after every event before them.
    if let Ok(ahead) = last_event.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(ahead);
    }
    let answers = runtime.block_on(post_waiting(&intake.address, &key, waited, args.wait_rate))?;
    println!(
        "decision in the response at {}/s: p50 {:.0} ms, p99 {:.0} ms ({} answered, {} pending, {} errors)",
        args.wait_rate,
        answers.quantile(0.5).as_secs_f64() * 1e3,
        answers.quantile(0.99).as_secs_f64() * 1e3,
        answers.answered,
        answers.pending,
        answers.errors,
    );
    offsets.wait_for(records.len())?;
    scorer.kill();
    Ok(())
}

/// What the requests waiting for their decisions got: each one's time to its answer, and how
/// many were answered in full, left pending or failed.
struct Answers {
    latencies: Vec<Duration>,
    answered: usize,
    pending: usize,
    errors: usize,
}

impl Answers {
    /// The `q` quantile of the latencies (sorted).
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

/// How long a payment waits for its decision in the benchmark, at most.
const WAIT: &str = "1s";

/// Posts `records` to the intake at `address`, one a request with `?wait=`, `per_second` of
/// them a second whatever the answers take (an open loop, as payments arrive), each stamped
/// with the time it is posted.
async fn post_waiting(
    address: &str,
    key: &str,
    records: &[Prepared],
    per_second: usize,
) -> Result<Answers> {
    let client = reqwest::Client::new();
    let url = format!("{address}/v1/transactions?wait={WAIT}");
    let started = tokio::time::Instant::now();
    let interval = Duration::from_secs(1) / per_second.max(1) as u32;
    let mut requests = Vec::with_capacity(records.len());
    for (i, (_, payload)) in records.iter().enumerate() {
        tokio::time::sleep_until(started + interval * i as u32).await;
        let mut tx: serde_json::Value = serde_json::from_slice(payload)?;
        tx["occurred_at"] = Timestamp::from_unix_millis(unix_millis_now(), 0)
            .map_err(anyhow::Error::msg)?
            .to_string()
            .into();
        let request = client.post(&url).bearer_auth(key).json(&tx);
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = request.send().await.ok()?;
            let status = response.status().as_u16();
            response.bytes().await.ok()?;
            Some((status, sent.elapsed()))
        }));
    }
    let mut answers = Answers {
        latencies: Vec::with_capacity(records.len()),
        answered: 0,
        pending: 0,
        errors: 0,
    };
    for request in requests {
        match request.await? {
            Some((200, took)) => {
                answers.answered += 1;
                answers.latencies.push(took);
            }
            Some((202, took)) => {
                answers.pending += 1;
                answers.latencies.push(took);
            }
            _ => answers.errors += 1,
        }
    }
    answers.latencies.sort_unstable();
    Ok(answers)
}

fn unix_millis_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// A key of the ingest role for the benchmark's payment system.
async fn ingest_key(postgres: &str) -> Result<String> {
    let pool = sqlx::PgPool::connect(postgres).await?;
    crate::admin::create_key(
        &pool,
        &super::service::bench_audit_trail(),
        "bench payments",
        vigil_api::Role::Ingest,
        Some(1_000_000_000),
    )
    .await
}

/// Generated transactions, prepared to produce, `n` of them, over `cards`, and the time of the
/// last. Their times are made to follow one another at `rate` a second, the `backlog`-th at the
/// time of the run, as a live stream's would: the generator spreads them over days, and
/// replayed as they are, a second of the paced phase would carry hours of event time, which no
/// live stream does (the shared state is pooled every 5 s of event time, so that would pool it
/// every few transactions).
fn load(
    n: usize,
    backlog: usize,
    cards: u32,
    rate: usize,
) -> Result<(Vec<Prepared>, std::time::SystemTime)> {
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
    let last = std::time::UNIX_EPOCH + Duration::from_millis(at(n.saturating_sub(1)).max(0) as u64);
    Ok((records, last))
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

    /// Postgres's clock, as text.
    fn now(&self) -> Result<String> {
        Ok(self
            .runtime
            .block_on(sqlx::query_scalar("SELECT now()::text").fetch_one(&self.pool))?)
    }

    /// Waits (at most a minute) until every partition was saved since the scorer restarted at
    /// `restarted_at` (a restarted scorer saves each once it has caught up) and no snapshot has
    /// been written for 5 s: those the load before asked for are done.
    fn wait_for_snapshots(&self, restarted_at: &str) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_mins(1) {
            let quiet: Option<bool> = self.runtime.block_on(
                sqlx::query_scalar(
                    "SELECT (SELECT min(taken_at) FROM engine_snapshots) > $1::timestamptz
                        AND greatest((SELECT max(taken_at) FROM engine_snapshots),
                                     (SELECT max(taken_at) FROM shared_snapshots))
                            < now() - interval '5 seconds'",
                )
                .bind(restarted_at)
                .fetch_one(&self.pool),
            )?;
            if quiet != Some(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        println!("(snapshots were still being written when the next phase began)");
        Ok(())
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

/// `vigil ingest` on the benchmark's broker, database (for its keys) and Redis.
fn spawn_intake(brokers: &str, postgres: &str) -> Result<Service> {
    Service::spawn(
        "ingest",
        &[
            ("VIGIL__KAFKA__BROKERS", brokers),
            ("VIGIL__POSTGRES__URL", postgres),
            ("VIGIL__REDIS__PREFIX", "vigil_bench"),
            ("VIGIL__INGEST__LISTEN", "127.0.0.1:0"),
        ],
    )
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
