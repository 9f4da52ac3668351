//! `vigil demo`: the whole pipeline on one machine in one command. An embedded Kafka-protocol
//! broker (unless `--brokers` names one), the local Postgres (migrated) and Redis (private ones
//! started when those cannot be reached: [`private`]), the intake, the scoring service and the
//! API with its console in this process, and the generator's payments streamed through the
//! HTTP intake at a chosen rate, with a live line of what is happening.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vigil_api::Role;
use vigil_engine::{EngineConfig, Span};
use vigil_schema::{Label, Transaction};

mod private;

use crate::admin;
use vigil_app::broker::DevBroker;
use vigil_app::config::Config;
use vigil_app::serve::{self, Services};
use vigil_app::{migrate, progress};
use vigil_common::scrape::Scrape;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Transactions a second posted through the HTTP intake.
    #[arg(long, default_value_t = 2_000)]
    pub rate: usize,
    /// Cards of the generated payments.
    #[arg(long, default_value_t = 20_000)]
    pub cards: u32,
    /// Days of generated payments (streamed faster than real time: event time is theirs).
    #[arg(long, default_value_t = 60)]
    pub days: u32,
    /// A Kafka broker to use instead of the embedded one (`vigil migrate` creates the topics).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Configuration file (default: ./vigil.toml when present); VIGIL__* variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The demo's own database and Redis prefix, made anew on each run: its broker is new too.
const DEMO: &str = "vigil_demo";

pub fn run(args: &DemoArgs) -> Result<()> {
    serve::init_logs_at("warn");
    let mut config = Config::load(args.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let private = runtime.block_on(private::ensure(&mut config))?;
    let mut postgres: sqlx::postgres::PgConnectOptions =
        config.postgres.url.parse().context("postgres.url")?;
    postgres = postgres.database(DEMO);
    config.postgres.url = sqlx::ConnectOptions::to_url_lossy(&postgres).to_string();
    config.redis.prefix = DEMO.into();
    // Generated cards only, in a database made anew: a key of its own, unless one is set.
    if config.check_secrets().is_err() {
        config.pan_key = random_key()?;
    }
    // The demo streams its days about 3,600 times faster than real time: pooled every 5 s of
    // event time, the partitions' shared state would be pooled every few payments and the
    // partitions would wait on each other more than they score (docs/ARCHITECTURE.md,
    // "Partitions and instances"). A live stream's 5 s hold thousands of payments.
    if config.engine.share_every == EngineConfig::default().share_every {
        config.engine.share_every = Span::seconds(60);
    }
    let embedded = match &args.brokers {
        Some(brokers) => {
            config.kafka.brokers.clone_from(brokers);
            None
        }
        None => {
            let broker = DevBroker::start(config.kafka.partitions)?;
            config.kafka.brokers = broker.bootstrap_servers();
            Some(broker)
        }
    };
    let dir = tempfile::tempdir()?;
    runtime.block_on(async {
        migrate::drop_database(&config.postgres.url).await?;
        migrate::migrate_postgres(&config.postgres.url).await?;
        if embedded.is_none() {
            migrate::create_topics(&config.kafka).await?;
        }
        let data = generated(dir.path(), args)?;
        let registry = prometheus::Registry::new();
        let running = serve::start(&config, Services::All, &registry).await?;
        let address = format!(
            "http://{}",
            running.address.context("`vigil serve` listens for the intake and the API")?
        );
        let ops = running.ops_address;
        let pool = sqlx::PgPool::connect(&config.postgres.url).await?;
        // Posting 10 requests a second; the key is also the user's way into the API.
        let trail = config.audit_trail();
        let key = admin::create_key(&pool, &trail, "demo", Role::Admin, Some(1000)).await?;
        let investigator = admin::create_key(&pool, &trail, "ana", Role::Investigator, None).await?;
        println!(
            "Vigil demo: broker {}{}, intake and API on {address}\n\
             (POST /v1/transactions, GET /v1/alerts, API docs at {address}/docs),\n\
             metrics at http://{ops}/metrics,\n\
             admin API key: {key}\n\
             e.g. curl -H 'Authorization: Bearer {key}' '{address}/v1/alerts?sort=score&limit=5'\n\
             Investigators' console: {address}/console/ (sign in with the investigator key\n\
             {investigator}, or the admin key for the admin pages too)\n\
             Decisions and alerts in the Postgres database {DEMO}, Redis keys {DEMO}:*. Ctrl-C stops.",
            config.kafka.brokers,
            if embedded.is_some() { " (embedded)" } else { "" },
        );
        let feeder = tokio::spawn(feed(address, key, data, args.rate));
        let live = progress::live();
        // Without a terminal to rewrite a line in, a line every five seconds.
        let every = Duration::from_secs(if live.is_hidden() { 5 } else { 1 });
        let mut last = (Instant::now(), Scrape::default());
        while !running.stop.is_cancelled() {
            tokio::time::sleep(every).await;
            let now = Scrape::gather(&registry);
            let text = line(&last.1, &now, last.0.elapsed());
            if live.is_hidden() {
                println!("{text}");
            }
            live.set_message(text);
            last = (Instant::now(), now);
            if feeder.is_finished() {
                live.println("all generated payments posted; still scoring what is in flight");
            }
        }
        live.finish();
        feeder.abort();
        running.wait().await
    })?;
    // The services' tasks end with their runtime, before the broker and the private Postgres
    // and Redis they would otherwise retry.
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(embedded);
    drop(private);
    Ok(())
}

/// Generates the payments to stream; returns their files.
fn generated(dir: &Path, args: &DemoArgs) -> Result<(PathBuf, PathBuf)> {
    let summary = crate::generate::sample(dir, args.days, args.cards, (args.cards / 10).max(50))?;
    Ok((summary.transactions_path, summary.labels_path))
}

/// One live line: what happened since the last.
fn line(before: &Scrape, now: &Scrape, over: Duration) -> String {
    let per_second = |a: f64, b: f64| (a - b) / over.as_secs_f64();
    let ms = |seconds: Option<f64>| {
        seconds.map_or_else(|| "-".to_owned(), |s| format!("{:.0}", s * 1e3))
    };
    format!(
        "scored {:.0} ({:.0}/s) | lag {:.0} | event-to-commit p50 {} ms, p99 {} ms | in the response p99 {} ms | alerts {:.0} (+{:.0})",
        now.decisions,
        per_second(now.decisions, before.decisions),
        now.lag,
        ms(now.latency_quantile(before, 0.5)),
        ms(now.latency_quantile(before, 0.99)),
        ms(now.answered_quantile(before, 0.99)),
        now.alerts,
        now.alerts - before.alerts,
    )
}

/// Posts the generated transactions and labels through the intake in event-time order, at
/// `rate` a second, a tenth of a second's worth a request; the transactions wait for their
/// decisions (`?wait=`), as a payment system would, so the live line shows how long that takes.
async fn feed(
    address: String,
    key: String,
    (transactions, labels): (PathBuf, PathBuf),
    rate: usize,
) -> Result<()> {
    let client = reqwest::Client::new();
    let mut transactions = Events::open(&transactions, false)?;
    let mut labels = Events::open(&labels, true)?;
    let per_request = (rate / 10).max(1);
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let mut batch = [String::new(), String::new()];
        for _ in 0..per_request {
            let next = match (transactions.peek_time(), labels.peek_time()) {
                (Some(t), Some(l)) if l < t => &mut labels,
                (Some(_), _) => &mut transactions,
                (None, Some(_)) => &mut labels,
                (None, None) => break,
            };
            let line = next.take()?;
            let body = &mut batch[usize::from(next.is_label)];
            body.push_str(&line);
            body.push('\n');
        }
        if batch.iter().all(String::is_empty) {
            return Ok(());
        }
        let paths = ["/v1/transactions?wait=1s", "/v1/labels"];
        for (body, path) in batch.into_iter().zip(paths) {
            if body.is_empty() {
                continue;
            }
            let response = client
                .post(format!("{address}{path}"))
                .bearer_auth(&key)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .context("posting to the intake")?;
            anyhow::ensure!(
                response.status().is_success(),
                "the intake answered {}",
                response.status()
            );
        }
        sent += per_request;
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// An NDJSON file read a line ahead, with the event time of that line.
struct Events {
    lines: Lines<BufReader<File>>,
    is_label: bool,
    next: Option<(i64, String)>,
}

impl Events {
    fn open(path: &Path, is_label: bool) -> Result<Self> {
        let mut events = Self {
            lines: BufReader::new(File::open(path)?).lines(),
            is_label,
            next: None,
        };
        events.advance()?;
        Ok(events)
    }

    fn peek_time(&self) -> Option<i64> {
        self.next.as_ref().map(|n| n.0)
    }

    fn take(&mut self) -> Result<String> {
        let (_, line) = self.next.take().context("no line left")?;
        self.advance()?;
        Ok(line)
    }

    fn advance(&mut self) -> Result<()> {
        self.next = match self.lines.next().transpose()? {
            None => None,
            Some(line) => {
                let time = if self.is_label {
                    vigil_schema::from_json::<Label>(&line)?.labelled_at
                } else {
                    vigil_schema::from_json::<Transaction>(&line)?.occurred_at
                };
                Some((time.unix_millis(), line))
            }
        };
        Ok(())
    }
}

/// 32 random bytes in hex.
fn random_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}
