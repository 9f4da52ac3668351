//! The app builder called in process (`serve::start` on port 0): the intake, the scoring service
//! and the API in one process, as `vigil serve` runs them, on the embedded broker, a database of
//! its own (the local Postgres, migrated) and the local Redis. The process-level tests
//! (`tests/pipeline/`) keep what needs processes: kill -9, restarts, several instances.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use sqlx::PgPool;
use vigil_api::Role;
use vigil_api::audit::{Checkpoint, Verdict};
use vigil_api::keys::{NewKey, create_key};
use vigil_app::broker::DevBroker;
use vigil_app::config::Config;
use vigil_app::migrate::{grant_app_user, migrate_postgres};
use vigil_app::serve::{self, Services};

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}_{}_{nanos}", std::process::id())
}

/// A configuration for this test alone: its broker, database and Redis prefix, port 0.
fn config(brokers: String, database: &str) -> Config {
    let mut config = Config::default();
    "the app test's key, not a secret, 32 bytes".clone_into(&mut config.pan_key);
    config.kafka.brokers = brokers;
    config.kafka.partitions = 2;
    config.postgres.url = format!("{SERVER}/{database}");
    config.ingest.listen = "127.0.0.1:0".into();
    config.api.listen = "127.0.0.1:0".into();
    config.ops.listen = Some("127.0.0.1:0".into());
    database.clone_into(&mut config.redis.prefix);
    database.clone_into(&mut config.scoring.group);
    config
}

async fn decision_of(pool: &PgPool, transaction_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT decision FROM decisions WHERE transaction_id = $1")
        .bind(transaction_id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// How often the scoring service says it did `event` (`vigil_scoring_events_total`).
fn event_count(registry: &prometheus::Registry, event: &str) -> f64 {
    let families = registry.gather();
    let family = families
        .iter()
        .find(|f| f.name() == "vigil_scoring_events_total")
        .expect("the scoring service counts its events");
    family
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == event))
        .map_or(0.0, |m| m.get_counter().get_value())
}

/// The services refuse to tokenize card numbers with a key anyone could know.
#[tokio::test]
async fn the_services_refuse_a_published_or_short_pan_key() {
    for key in [vigil_app::config::DEVELOPMENT_PAN_KEY, "short", ""] {
        let mut config = config("127.0.0.1:9".into(), "vigil_never_created");
        key.clone_into(&mut config.pan_key);
        let refused = serve::start(&config, Services::Api, &prometheus::Registry::new()).await;
        let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.starts_with("pan_key "), "{key:?}: {error}");
    }
    let mut config = config("127.0.0.1:9".into(), "vigil_never_created");
    "short".clone_into(&mut config.audit.key);
    let refused = serve::start(&config, Services::Api, &prometheus::Registry::new()).await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.starts_with("audit.key "), "{error}");
}

/// The API appends a checkpoint of the audit trail to its file each time the trail grew, and a
/// last one when it stops; `verify` holds the trail to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_audit_checkpoints_outside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = unique("vigil_app_test");
    let mut config = config("127.0.0.1:9".into(), &database);
    config.audit.checkpoint_file = Some(dir.path().join("checkpoints"));
    config.audit.checkpoint_every_secs = 1;
    migrate_postgres(&config.postgres.url).await.unwrap();
    let pool = PgPool::connect(&config.postgres.url).await.unwrap();
    let trail = config.audit_trail();
    let key = |name: &str| NewKey {
        name: name.into(),
        role: Role::Investigator,
        rate_per_sec: None,
        expires_in_days: None,
    };
    create_key(&pool, &trail, "test", &key("first"))
        .await
        .unwrap();
    let running = serve::start(&config, Services::Api, &prometheus::Registry::new())
        .await
        .unwrap();
    let written = || std::fs::read_to_string(dir.path().join("checkpoints")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !written().starts_with("1:") {
        assert!(Instant::now() < deadline, "no checkpoint: {:?}", written());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    create_key(&pool, &trail, "test", &key("second"))
        .await
        .unwrap();
    running.stop.cancel();
    running.wait().await.unwrap();
    let checkpoints: Vec<Checkpoint> = written()
        .lines()
        .map(|line| Checkpoint::parse(line).unwrap())
        .collect();
    assert_eq!(
        checkpoints.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        trail.verify(&pool, &checkpoints).await.unwrap(),
        Verdict::Intact {
            records: 2,
            unkeyed: 0
        }
    );
}

/// The login role the services of these tests connect as (`postgres.app_user`).
const APP_USER: &str = "vigil_test_app";

/// Migrates `config`'s database as its owner and turns `config` to the services' role.
async fn migrate_as_owner(config: &mut Config) {
    migrate_postgres(&config.postgres.url).await.unwrap();
    grant_app_user(&config.postgres.url, APP_USER, "")
        .await
        .unwrap();
    config.postgres.url = config
        .postgres
        .url
        .replace("postgres://postgres@", &format!("postgres://{APP_USER}@"));
}

/// The services run as a member of `vigil_app`, which may append to the audit trail (and the
/// log of card reads) and nothing more: not change, delete or truncate their records, nor disable
/// the trigger that guards them.
#[tokio::test]
async fn the_services_role_may_only_append_to_the_audit_trail() {
    let mut config = config("127.0.0.1:9".into(), &unique("vigil_app_test"));
    migrate_as_owner(&mut config).await;
    let pool = PgPool::connect(&config.postgres.url).await.unwrap();
    let key = NewKey {
        name: "appended".into(),
        role: Role::Investigator,
        rate_per_sec: None,
        expires_in_days: None,
    };
    create_key(&pool, &config.audit_trail(), "test", &key)
        .await
        .unwrap();
    for statement in [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "DROP TABLE audit_log",
        "DELETE FROM card_reads",
        "UPDATE card_reads SET actor = 'mallory'",
    ] {
        let refused = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.contains("permission denied") || refused.contains("must be owner"),
            "{statement}: {refused}"
        );
    }
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(records, 1);
}

/// The whole app, as the services' role: a payment is decided and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_posted_to_the_app_in_process_is_decided_and_stored() {
    let broker = DevBroker::start(2).unwrap();
    let database = unique("vigil_app_test");
    let mut config = config(broker.bootstrap_servers(), &database);
    migrate_as_owner(&mut config).await;
    let pool = PgPool::connect(&config.postgres.url).await.unwrap();
    let key = NewKey {
        name: "app test".into(),
        role: Role::Ingest,
        rate_per_sec: None,
        expires_in_days: None,
    };
    let secret = create_key(&pool, &config.audit_trail(), "test", &key)
        .await
        .unwrap()
        .secret;

    let registry = prometheus::Registry::new();
    let running = serve::start(&config, Services::All, &registry)
        .await
        .unwrap();
    let payment = json!({
        "transaction_id": "app-t1",
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "card_id": "app-card-1",
        "merchant_id": "app-merchant-1",
        "amount_minor": 4200,
        "currency": "EUR",
        "channel": "pos",
    });
    let public = format!("http://{}", running.address.unwrap());
    let answer = reqwest::Client::new()
        .post(format!("{public}/v1/transactions"))
        .bearer_auth(&secret)
        .json(&payment)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());

    let deadline = Instant::now() + Duration::from_mins(1);
    let decision = loop {
        if let Some(decision) = decision_of(&pool, "app-t1").await {
            break decision;
        }
        assert!(Instant::now() < deadline, "no decision within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(decision, "approve", "a small first payment at a shop");
    // The payment system reads it back with the key it posted with.
    let client = reqwest::Client::new();
    let read = |id: &str| {
        client
            .get(format!("{public}/v1/decisions/{id}"))
            .bearer_auth(&secret)
            .send()
    };
    let answer = read("app-t1").await.unwrap();
    assert_eq!(answer.status(), 200);
    let answered: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answered["decision"], "approve", "{answered}");
    assert!(answered["reasons"].is_array(), "{answered}");
    assert!(
        answered["score"]
            .as_f64()
            .is_some_and(|s| (0.0..=1.0).contains(&s))
    );
    assert_eq!(read("app-never-posted").await.unwrap().status(), 404);
    assert!(event_count(&registry, "batch_committed") >= 1.0);
    assert_eq!(
        event_count(&registry, "partition_assigned"),
        4.0,
        "2 partitions of 2 topics"
    );
    // Operations on their own listener, not on the public one.
    let ops = format!("http://{}", running.ops_address);
    for path in ["/metrics", "/health", "/ready"] {
        let on_ops = reqwest::get(format!("{ops}{path}")).await.unwrap();
        assert_eq!(on_ops.status(), 200, "{path}");
        let on_public = reqwest::get(format!("{public}{path}")).await.unwrap();
        assert_eq!(on_public.status(), 404, "{path}");
    }
    let metrics = reqwest::get(format!("{ops}/metrics")).await.unwrap();
    let text = metrics.text().await.unwrap();
    for family in ["vigil_scoring_events_total", "vigil_ingest_items_total"] {
        assert!(text.contains(family), "{family} in /metrics");
    }

    running.stop.cancel();
    running.wait().await.unwrap();
    pool.close().await;
    vigil_app::migrate::drop_database(&format!("{SERVER}/{database}"))
        .await
        .unwrap();
}

/// The services' statements are cut off: one slow query cannot hold a connection for good.
#[tokio::test]
async fn a_slow_statement_is_cut_off() {
    let mut config = vigil_app::config::PostgresConfig {
        url: format!("{SERVER}/postgres"),
        ..Default::default()
    };
    let pool = serve::pool(&config).unwrap();
    let timeouts: (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(timeouts, ("30s".into(), "10s".into()));

    config.statement_timeout_secs = 1;
    let pool = serve::pool(&config).unwrap();
    let slow = sqlx::query("SELECT pg_sleep(3)").execute(&pool).await;
    let error = slow.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("statement timeout"), "{error}");
}

/// A loopback server with no `sslmode` asked is spoken to in the clear (sqlx's default would
/// encrypt a connection that never leaves the machine); one asked for is kept.
#[tokio::test]
async fn postgres_on_loopback_is_spoken_to_in_the_clear_unless_the_url_asks_for_tls() {
    let encrypted = async |url: String| -> bool {
        let pool = serve::pool(&vigil_app::config::PostgresConfig {
            url,
            ..Default::default()
        })
        .unwrap();
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(!encrypted(format!("{SERVER}/postgres")).await);
    assert!(!encrypted("postgres://postgres@localhost:5432/postgres".into()).await);
    assert!(encrypted(format!("{SERVER}/postgres?sslmode=prefer")).await);
}

/// TLS to Postgres as the URL asks: `sslmode=require` encrypts (the local server has TLS, with a
/// self-signed certificate), `sslmode=verify-full` also checks the certificate, which this one
/// fails.
#[tokio::test]
async fn postgres_connections_use_tls_when_the_url_says_so() {
    let pool_at = |mode: &str| {
        serve::pool(&vigil_app::config::PostgresConfig {
            url: format!("{SERVER}/postgres?sslmode={mode}"),
            ..Default::default()
        })
        .unwrap()
    };
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool_at("require"))
            .await
            .unwrap();
    assert!(encrypted);
    let unverified = sqlx::query("SELECT 1")
        .execute(&pool_at("verify-full"))
        .await;
    let error = unverified.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}
