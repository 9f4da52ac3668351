//! `vigil bench api`: the investigator API as investigators load it. A database of `--alerts`
//! alerts (with their decisions) over 90 days, cards, merchants, assignees, statuses and reason
//! codes spread as a queue has them, and the card risk of every card in Redis; then `vigil api`
//! in a process of its own and `--clients` concurrent clients, each looping: a filtered first
//! page of the queue followed through a few cursor pages, or a card risk lookup. Latencies are
//! measured at the client, each request on its own, and reported exactly (no histogram).

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vigil_api::Role;
use vigil_schema::redis_keys;

use super::service::Service;
use vigil_app::broker::DevBroker;
use vigil_app::progress;

#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Alerts in Postgres.
    #[arg(long, default_value_t = 1_000_000)]
    pub alerts: u32,
    /// Cards the alerts are spread over (each with its risk in Redis).
    #[arg(long, default_value_t = 50_000)]
    pub cards: u32,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Seconds of load measured in each of the two phases (queue, card risk).
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Seconds of load before each phase's measurement: the API starts with new Postgres
    /// connections, whose server processes map the shared buffers page by page as they first
    /// touch them; a long-running API has done that long before.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Postgres server (a database `vigil_bench_api` is made anew there).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/vigil_bench_api"
    )]
    pub postgres: String,
    /// Reuse the database as the last run left it (skips the seeding).
    #[arg(long)]
    pub reuse: bool,
}

const MERCHANTS: u32 = 5_000;
const ASSIGNEES: u32 = 20;
const PREFIX: &str = "vigil_bench_api";
const REASONS: [&str; 6] = [
    "VELOCITY_BURST",
    "CARD_TESTING",
    "AMOUNT_ABOVE_NORM",
    "IMPOSSIBLE_TRAVEL",
    "MERCHANT_RECENT_FRAUDS",
    "NEW_COUNTRY_OR_DEVICE",
];

pub fn run(args: &ApiArgs) -> Result<()> {
    vigil_app::serve::init_logs_at("warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (key, shared_buffers) = runtime.block_on(prepare(args))?;
    // Only verdicts reach the broker, and the bench makes none; the API still wants one.
    let broker = DevBroker::start(1)?;
    let api = Service::spawn(
        "api",
        &[
            ("VIGIL__KAFKA__BROKERS", &broker.bootstrap_servers()),
            ("VIGIL__POSTGRES__URL", &args.postgres),
            ("VIGIL__REDIS__PREFIX", PREFIX),
            ("VIGIL__API__LISTEN", "127.0.0.1:0"),
        ],
    )?;
    println!(
        "api: {} alerts, {} cards, {} clients, {} s a phase after {} s of warm-up; \
         `vigil api` with its default config; postgres shared_buffers {shared_buffers}",
        args.alerts, args.cards, args.clients, args.seconds, args.warmup
    );
    let queue = runtime.block_on(load(&api.address, &key, args, Phase::Queue))?;
    queue.report("GET /v1/alerts (filtered, paginated)");
    let risk = runtime.block_on(load(&api.address, &key, args, Phase::Risk))?;
    risk.report("GET /v1/cards/{id}/risk");
    println!("api peak memory: {:.0} MiB", api.peak_memory_mib()?);
    Ok(())
}

/// Seeds Postgres and Redis (unless `--reuse`) and makes a key for the clients; returns it
/// with the server's `shared_buffers`, which the figures depend on.
async fn prepare(args: &ApiArgs) -> Result<(String, String)> {
    let pool = super::service::database(&args.postgres, args.reuse).await?;
    if !args.reuse {
        let started = Instant::now();
        seed_postgres(&pool, args).await?;
        println!(
            "seeded {} alerts in {:.0} s",
            args.alerts,
            started.elapsed().as_secs_f64()
        );
        seed_redis(&pool, args).await?;
    }
    let shared_buffers = sqlx::query_scalar("SHOW shared_buffers")
        .fetch_one(&pool)
        .await?;
    let key = crate::admin::create_key(
        &pool,
        &super::service::bench_audit_trail(),
        "bench",
        Role::Investigator,
        Some(1_000_000_000),
    )
    .await?;
    Ok((key, shared_buffers))
}

async fn seed_postgres(pool: &sqlx::PgPool, args: &ApiArgs) -> Result<()> {
    let spinner = progress::live();
    spinner.set_message("seeding: decisions");
    // Pseudo-random but repeatable spreads from hashes of the row number (independent of one
    // another, so that every filter finds what a real queue would).
    sqlx::query(
        "INSERT INTO decisions (transaction_id, card_id, merchant_id, occurred_at, amount_minor,
             currency, score, decision, model_version, reasons, features)
         SELECT 'tx_' || lpad(i::text, 9, '0'),
             'card_' || abs(hashint8(i * 3)) % $2,
             'm_' || abs(hashint8(i * 5)) % $3,
             timestamptz '2026-01-01' + (i::float8 / $1) * interval '90 days',
             100 + (i * 7919) % 200000, 'EUR',
             (abs(hashint8(i * 7)) % 1000) / 1000.0,
             CASE WHEN abs(hashint8(i * 11)) % 5 = 0 THEN 'decline' ELSE 'review' END,
             'online-0.1.0', 'VELOCITY_BURST;card_count_10m:+1.52', ''::bytea
         FROM generate_series(1, $1::bigint) i",
    )
    .bind(i64::from(args.alerts))
    .bind(i64::from(args.cards))
    .bind(i64::from(MERCHANTS))
    .execute(pool)
    .await?;
    spinner.set_message("seeding: alerts");
    sqlx::query(
        "INSERT INTO alerts (transaction_id, card_id, merchant_id, occurred_at, score, decision,
             reasons, rules, status, assignee, disposition, transaction, explanation, created_at,
             updated_at)
         SELECT transaction_id, card_id, merchant_id, occurred_at, score, decision, reasons,
             ARRAY[$1[1 + abs(hashint8(n * 13)) % 6], $1[1 + abs(hashint8(n * 17)) % 6]],
             CASE WHEN s < 6 THEN 'open' WHEN s < 9 THEN 'in_review' ELSE 'closed' END,
             CASE WHEN s >= 6 THEN 'investigator_' || abs(hashint8(n * 19)) % $2 END,
             CASE WHEN s = 9 THEN (CASE WHEN n % 3 = 0 THEN 'fraud' ELSE 'genuine' END) END,
             jsonb_build_object('transaction_id', transaction_id, 'card_id', card_id,
                 'merchant_id', merchant_id, 'amount_minor', amount_minor, 'currency', 'EUR'),
             jsonb_build_object('score', score, 'decision', decision, 'rules', '[]'::jsonb,
                 'model', '[]'::jsonb, 'comparisons',
                 jsonb_build_array('amount is 7.3x this card''s 30-day average')),
             occurred_at, occurred_at
         FROM (SELECT d.*, abs(hashint8(n * 23)) % 10 AS s
               FROM (SELECT *, substr(transaction_id, 4)::bigint AS n FROM decisions) d) d",
    )
    .bind(REASONS.as_slice())
    .bind(i64::from(ASSIGNEES))
    .execute(pool)
    .await?;
    spinner.set_message("seeding: alert reasons");
    sqlx::query(
        "INSERT INTO alert_reasons (reason, transaction_id, occurred_at, score)
         SELECT DISTINCT unnest(rules), transaction_id, occurred_at, score FROM alerts",
    )
    .execute(pool)
    .await?;
    // As autovacuum leaves tables in service: statistics, and visibility maps that let the
    // reason filter's index-only scan skip the heap.
    spinner.set_message("seeding: vacuum analyze");
    for vacuum in [
        "VACUUM ANALYZE alerts",
        "VACUUM ANALYZE alert_reasons",
        "VACUUM ANALYZE decisions",
    ] {
        sqlx::query(vacuum).execute(pool).await?;
    }
    spinner.finish_and_clear();
    Ok(())
}

/// Each card's latest decision and its newest alerts, as the scoring service keeps them.
async fn seed_redis(pool: &sqlx::PgPool, args: &ApiArgs) -> Result<()> {
    let rows: Vec<(String, String, f32, String, i64)> = sqlx::query_as(
        "SELECT DISTINCT ON (card_id) card_id, transaction_id, score, decision,
             (extract(epoch FROM occurred_at) * 1000)::bigint
         FROM alerts ORDER BY card_id, occurred_at DESC",
    )
    .fetch_all(pool)
    .await?;
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let mut old: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}:*"))
        .query_async(&mut redis)
        .await?;
    for chunk in old.chunks_mut(10_000) {
        redis::cmd("DEL")
            .arg(&*chunk)
            .query_async::<()>(&mut redis)
            .await?;
    }
    for chunk in rows.chunks(5_000) {
        let mut pipe = redis::pipe();
        for (card, tx, score, decision, at) in chunk {
            let key = redis_keys::card(PREFIX, card);
            pipe.hset_multiple(
                &key,
                &[
                    ("score", score.to_string()),
                    ("decision", decision.clone()),
                    ("transaction_id", tx.clone()),
                    ("occurred_at", at.to_string()),
                ],
            )
            .ignore();
            for back in 0..20 {
                pipe.zadd(
                    redis_keys::card_alerts(PREFIX, card),
                    format!("{tx}_{back}"),
                    at - back * 60_000,
                )
                .ignore();
            }
        }
        pipe.query_async::<()>(&mut redis).await?;
    }
    println!(
        "seeded the risk of {} cards in Redis",
        rows.len().min(args.cards as usize)
    );
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queue,
    Risk,
}

/// Latencies of one phase.
struct Latencies {
    all: Vec<Duration>,
    errors: usize,
    took: Duration,
}

impl Latencies {
    fn report(mut self, what: &str) {
        self.all.sort_unstable();
        let at = |q: f64| {
            let i = ((self.all.len() as f64 * q).ceil() as usize).clamp(1, self.all.len()) - 1;
            self.all[i].as_secs_f64() * 1e3
        };
        println!(
            "{what:<40} {:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} requests, {} errors)",
            self.all.len() as f64 / self.took.as_secs_f64(),
            at(0.5),
            at(0.99),
            at(1.0),
            self.all.len(),
            self.errors
        );
    }
}

/// `--clients` clients, each requesting in a loop for `--warmup` and `--seconds`; the requests
/// sent after the warm-up are measured.
async fn load(address: &str, key: &str, args: &ApiArgs, phase: Phase) -> Result<Latencies> {
    let warmup = Duration::from_secs(args.warmup);
    let end = warmup + Duration::from_secs(args.seconds);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|n| {
            let client = client.clone();
            let (address, key, cards) = (address.to_owned(), key.to_owned(), args.cards);
            tokio::spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
                let mut latencies = vec![];
                let mut errors = 0;
                while started.elapsed() < end {
                    let paths = match phase {
                        Phase::Queue => vec![queue_path(&mut rng, cards)],
                        Phase::Risk => vec![format!(
                            "/v1/cards/card_{}/risk",
                            rng.random_range(0..cards)
                        )],
                    };
                    let mut path = paths[0].clone();
                    // A first page, then up to three more by cursor.
                    for _ in 0..rng.random_range(1..=4) {
                        let sent = Instant::now();
                        let response = client
                            .get(format!("{address}{path}"))
                            .bearer_auth(&key)
                            .send()
                            .await;
                        let body = match response {
                            Ok(r) if r.status().is_success() => r.text().await.ok(),
                            _ => None,
                        };
                        if sent.duration_since(started) >= warmup {
                            latencies.push(sent.elapsed());
                        }
                        let Some(body) = body else {
                            errors += 1;
                            break;
                        };
                        let next = (phase == Phase::Queue)
                            .then(|| serde_json::from_str::<Page>(&body).ok())
                            .flatten()
                            .and_then(|page| page.next_cursor);
                        match next {
                            Some(cursor) => path = format!("{}&cursor={cursor}", paths[0]),
                            None => break,
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = vec![];
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        all.extend(latencies);
        errors += e;
    }
    Ok(Latencies {
        all,
        errors,
        took: started.elapsed().saturating_sub(warmup),
    })
}

/// What a client reads of a page: where the next one starts.
#[derive(serde::Deserialize)]
struct Page {
    next_cursor: Option<String>,
}

/// A first page of the queue as investigators ask for it: one of the usual filters, 50 a page.
fn queue_path(rng: &mut ChaCha8Rng, cards: u32) -> String {
    let day = rng.random_range(1..=89);
    let filter = match rng.random_range(0..8) {
        0 => "status=open".to_owned(),
        1 => "status=open&sort=score".to_owned(),
        2 => format!("card_id=card_{}", rng.random_range(0..cards)),
        3 => format!(
            "merchant_id=m_{}&status=open",
            rng.random_range(0..MERCHANTS)
        ),
        4 => format!(
            "assignee=investigator_{}&status=in_review",
            rng.random_range(0..ASSIGNEES)
        ),
        5 => format!(
            "reason={}&status=open",
            REASONS[rng.random_range(0..REASONS.len())]
        ),
        6 => "decision=decline&min_score=0.9".to_owned(),
        _ => format!(
            "status=open&from=2026-01-{:02}T00:00:00Z&to=2026-01-{:02}T00:00:00Z",
            day.min(30),
            day.min(30) + 1
        ),
    };
    format!("/v1/alerts?{filter}&limit=50")
}
