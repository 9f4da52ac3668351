//! `vigil bench rules`: a rule tested on history as an admin tests one, over a busy stream's
//! month. A database of `--decisions` decisions over `--days` days (feature vectors as the
//! scorer stores them, 1 % labelled), a draft, then `--runs` tests of it over the whole period
//! (the same call as `POST /v1/rules/{id}/test`), each timed from the call to the report.

use std::time::Instant;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vigil_api::rules::{RuleAction, RuleBody, book, history};
use vigil_engine::{EngineConfig, RuleSet};
use vigil_models::{FEATURE_COUNT, features::index};

use super::service::bench_audit_trail;
use vigil_app::progress;

#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    /// Decisions in Postgres.
    #[arg(long, default_value_t = 3_000_000)]
    pub decisions: u32,
    /// Days they are spread over.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Tests timed.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Postgres server (a database `vigil_bench_rules` is made anew there).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/vigil_bench_rules"
    )]
    pub postgres: String,
    /// Reuse the database as the last run left it (skips the seeding).
    #[arg(long)]
    pub reuse: bool,
}

/// Distinct feature vectors the decisions are drawn from.
const TEMPLATES: usize = 4096;

pub fn run(args: &RulesArgs) -> Result<()> {
    // Not `warn`: sqlx calls every statement over a second slow, and these all are.
    vigil_app::serve::init_logs_at("error");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}

async fn bench(args: &RulesArgs) -> Result<()> {
    let pool = super::service::database(&args.postgres, args.reuse).await?;
    if !args.reuse {
        let started = Instant::now();
        seed(&pool, args).await?;
        println!(
            "seeded {} decisions in {:.0} s",
            args.decisions,
            started.elapsed().as_secs_f64()
        );
    }
    let rule = RuleBody {
        id: "bench_big_online".into(),
        description: "A large amount online, new to the card".into(),
        when: "amount >= 50000 and channel == \"ecom\" and card_new_merchant == 1".into(),
        score: None,
        action: Some(RuleAction::Review),
        reason: "BENCH_BIG_ONLINE".into(),
        shadow: false,
    };
    let trail = bench_audit_trail();
    book::save_draft(
        &pool,
        &trail,
        "bench",
        &rule.id,
        book::Proposal::Change(&rule),
    )
    .await?;
    let (from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT min(occurred_at), max(occurred_at) + interval '1 second' FROM decisions",
        )
        .fetch_one(&pool)
        .await?;
    let period = history::Period {
        from: Some(from),
        to: Some(to),
    };
    println!(
        "rules: a draft tested over {} decisions, {} days, {} runs",
        args.decisions, args.days, args.runs
    );
    let mut seconds = vec![];
    for _ in 0..args.runs {
        let started = Instant::now();
        let report = history::test_rule(&pool, &EngineConfig::default(), &rule.id, &period).await?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "  {} decisions read, {} hits, {} alerts added: {took:.2} s",
            report.decisions, report.hits, report.alerts_added
        );
        seconds.push(took);
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    println!(
        "rule tested on history: {} decisions in {median:.2} s (median), {:.0} decisions/s",
        args.decisions,
        f64::from(args.decisions) / median
    );
    Ok(())
}

/// The decisions, drawn from `TEMPLATES` random feature vectors by a hash of the row number,
/// with the default rules published as version 1.
async fn seed(pool: &sqlx::PgPool, args: &RulesArgs) -> Result<()> {
    let spinner = progress::live();
    spinner.set_message("seeding: feature vectors");
    sqlx::query(
        "INSERT INTO rule_set_versions (version, rules, author, approver, summary)
         VALUES (1, $1, 'bench', 'bench', 'seeded')",
    )
    .bind(sqlx::types::Json(RuleSet::default_rules().specs()))
    .execute(pool)
    .await?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut amounts = Vec::with_capacity(TEMPLATES);
    let mut vectors = Vec::with_capacity(TEMPLATES);
    for _ in 0..TEMPLATES {
        let amount = (10.0_f64.powf(rng.random_range(2.0..6.0))) as i64;
        let mut x: Vec<f32> = (0..FEATURE_COUNT)
            .map(|_| rng.random_range(0.0..10.0))
            .collect();
        x[index::AMOUNT] = amount as f32;
        x[index::CARD_NEW_MERCHANT] = f32::from(rng.random_bool(0.3));
        amounts.push(amount);
        vectors.push(x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    }
    sqlx::query("CREATE TABLE bench_templates (n int PRIMARY KEY, amount bigint, features bytea)")
        .execute(pool)
        .await?;
    let numbers: Vec<i32> = (0..TEMPLATES as i32).collect();
    sqlx::query(
        "INSERT INTO bench_templates SELECT * FROM UNNEST($1::int[], $2::bigint[], $3::bytea[])",
    )
    .bind(&numbers)
    .bind(&amounts)
    .bind(&vectors)
    .execute(pool)
    .await?;
    spinner.set_message(format!("seeding: {} decisions", args.decisions));
    sqlx::query(
        "INSERT INTO decisions (transaction_id, card_id, merchant_id, occurred_at, amount_minor,
             currency, score, decision, model_version, reasons, features, country, mcc, channel,
             model_log_odds, rule_set_version)
         SELECT 'tx_' || lpad(i::text, 9, '0'), 'card_' || abs(hashint8(i * 3)) % 100000,
             'm_' || abs(hashint8(i * 5)) % 5000,
             now() - make_interval(secs => ($2::float8 * 86400 * i) / $1),
             t.amount, 'EUR', 0.01, 'approve', 'online', '', t.features,
             (ARRAY['FR', 'DE', 'US', 'GB'])[1 + abs(hashint8(i * 7)) % 4], '5411',
             (ARRAY['pos', 'ecom', 'atm', 'moto'])[1 + abs(hashint8(i * 11)) % 4],
             -4.6, 1
         FROM generate_series(1, $1) AS i
         JOIN bench_templates t ON t.n = abs(hashint8(i)) % $3",
    )
    .bind(i64::from(args.decisions))
    .bind(f64::from(args.days))
    .bind(TEMPLATES as i64)
    .execute(pool)
    .await?;
    spinner.set_message("seeding: labels");
    sqlx::query(
        "INSERT INTO labels (transaction_id, source, is_fraud, labelled_at)
         SELECT transaction_id, 'chargeback', abs(hashint8(length(transaction_id) + amount_minor)) % 3 = 0, now()
         FROM decisions WHERE abs(hashint8(hashtext(transaction_id))) % 100 = 0",
    )
    .execute(pool)
    .await?;
    sqlx::query("DROP TABLE bench_templates")
        .execute(pool)
        .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    spinner.finish_and_clear();
    Ok(())
}
