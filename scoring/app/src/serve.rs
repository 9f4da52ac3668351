//! The long-running services: `vigil ingest` (HTTP intake), `vigil score` (the scoring
//! service), `vigil api` (the investigator API) and `vigil serve` (all three in one process, on
//! one port). Each serves `/metrics`, `/health` and `/ready`, logs with `tracing` (JSON when
//! `VIGIL_LOG_FORMAT=json`) and stops gracefully on SIGTERM or Ctrl-C: the HTTP services finish
//! their requests, the scoring service its batch, which it commits before leaving the group.
//! The intake and the API take API keys (`vigil keys create`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;
use vigil_api::{Api, ApiParts, Guard, Keys, audit, auth};
use vigil_ingest::http::{self as intake, Intake};
use vigil_schema::pan::PanTokenizer;
use vigil_scoring::service::{self, ScoringMetrics, ServiceParts};

use crate::backtest::load_rules;
use crate::config::{Config, PostgresConfig};
use crate::ops::{self, Ops};
use crate::train::schedule::{self, Schedule};
use tokio_util::sync::CancellationToken;

/// Which services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Services {
    Ingest,
    Score,
    Api,
    /// Ingest, scoring and the API.
    All,
}

pub fn run(config: Config, services: Services) -> Result<()> {
    init_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(config, services))
}

pub fn init_logs() {
    init_logs_at("info");
}

/// Logs at `level` unless `RUST_LOG` says otherwise.
pub fn init_logs_at(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| format!("{level},rdkafka=warn,sqlx=warn").into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("VIGIL_LOG_FORMAT").is_ok_and(|f| f == "json");
    // Only the first call in a process installs a subscriber.
    let _ = if json {
        logs.json().try_init()
    } else {
        logs.try_init()
    };
}

pub fn tokenizer(config: &Config) -> PanTokenizer {
    PanTokenizer::new(config.pan_key.as_bytes())
}

async fn run_async(config: Config, services: Services) -> Result<()> {
    let running = start(&config, services, &prometheus::Registry::new()).await?;
    if let Some(address) = running.address {
        println!("listening on http://{address}");
    }
    println!("operations on http://{}", running.ops_address);
    running.wait().await
}

/// Services started in this process, until SIGTERM or Ctrl-C (or one of them ends).
#[derive(Debug)]
pub struct Running {
    /// The public routes' address (none for the scorer alone).
    pub address: Option<SocketAddr>,
    /// `/metrics`, `/health` and `/ready` ([`ops`]).
    pub ops_address: SocketAddr,
    pub stop: CancellationToken,
    servers: Vec<Server>,
    scorer: Option<Scorer>,
    retraining: Option<tokio::task::JoinHandle<()>>,
    checkpoints: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits for the services to stop; the scoring service commits its batch first.
    pub async fn wait(self) -> Result<()> {
        for server in self.servers {
            server.await??;
        }
        self.stop.cancel();
        if let Some(scorer) = self.scorer {
            scorer.await??;
        }
        for task in [self.retraining, self.checkpoints].into_iter().flatten() {
            task.await?;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// How long a pooled Postgres connection may sit unused before it is tested before its next use.
const IDLE_BEFORE_TEST: Duration = Duration::from_secs(1);

/// Starts `services` with their metrics in `registry`.
pub async fn start(
    config: &Config,
    services: Services,
    registry: &prometheus::Registry,
) -> Result<Running> {
    config.check_secrets()?;
    let stop = CancellationToken::new();
    let pool = pool(&config.postgres)?;
    // Key lookups on a pool of their own: a flood of requests, or the scorer's commits, never
    // leave authentication waiting for a connection.
    let keys_pool = pool_of(
        &config.postgres,
        2,
        config.postgres.statement_timeout_secs,
        Commits::Durable,
    )?;
    let keys = Arc::new(Keys::new(keys_pool, config.api.default_rate_per_sec));
    let (scorer, retraining) = match services {
        Services::Score | Services::All => (
            Some(start_scoring(config, registry, &stop, pool.clone())?),
            schedule::start(
                Schedule {
                    engine: config.engine.clone(),
                    check_every: Duration::from_secs(config.scoring.retrain_check_secs),
                    audit: config.audit_trail(),
                },
                retraining_pool(&config.postgres)?,
                registry,
                stop.clone(),
            )?,
        ),
        Services::Ingest | Services::Api => (None, None),
    };
    let checkpoints = match services {
        Services::Api | Services::All => config
            .audit
            .checkpoints()
            .map(|every| audit::keep_checkpoints(pool.clone(), every, stop.clone())),
        Services::Score | Services::Ingest => None,
    };
    let intake = matches!(services, Services::Ingest | Services::All)
        .then(|| intake(config, registry))
        .transpose()?;
    let ops = Ops {
        registry: registry.clone(),
        postgres: (services != Services::Ingest).then(|| pool.clone()),
        intake: intake.clone(),
    };
    let api = matches!(services, Services::Api | Services::All)
        .then(|| api_router(config, registry, pool, keys.clone()))
        .transpose()?;
    let intake = intake.map(|intake| intake_router(intake, keys));
    let public = match (api, intake) {
        (Some(api), Some(intake)) => Some((api.merge(intake), &config.ingest.listen)),
        (Some(api), None) => Some((api, &config.api.listen)),
        (None, Some(intake)) => Some((intake, &config.ingest.listen)),
        (None, None) => None,
    };
    tokio::spawn(stop_on_signal(stop.clone()));
    let ops_listen = config.ops.listen.as_deref().unwrap_or(match services {
        Services::All | Services::Score => "127.0.0.1:9464",
        Services::Ingest => "127.0.0.1:9465",
        Services::Api => "127.0.0.1:9466",
    });
    let (ops_address, ops_server) = serve(ops_listen, ops::router(ops), &stop)
        .await
        .context("the operations listener (ops.listen)")?;
    let mut servers = vec![ops_server];
    let mut address = None;
    if let Some((router, listen)) = public {
        let (public_address, server) = serve(listen, router, &stop).await?;
        address = Some(public_address);
        servers.push(server);
    }
    Ok(Running {
        address,
        ops_address,
        stop,
        servers,
        scorer,
        retraining,
        checkpoints,
    })
}

/// The services' pool on Postgres, their statements and lock waits cut off as `config` says.
pub fn pool(config: &PostgresConfig) -> Result<sqlx::PgPool> {
    pool_of(
        config,
        config.max_connections,
        config.statement_timeout_secs,
        Commits::Durable,
    )
}

/// A pool of its own for the scheduled retraining, whose reads of the decisions logged are long
/// by nature (no statement timeout), so that they never hold the services' connections.
fn retraining_pool(config: &PostgresConfig) -> Result<sqlx::PgPool> {
    pool_of(config, 2, 0, Commits::Durable)
}

/// A pool of its own for the log of card reads: a read waits for its record to reach Postgres,
/// not for the WAL to reach the disk, which would cost every read an fsync (a crash of Postgres
/// itself may lose the last fraction of a second of read records).
fn card_reads_pool(config: &PostgresConfig) -> Result<sqlx::PgPool> {
    pool_of(
        config,
        4,
        config.statement_timeout_secs,
        Commits::Asynchronous,
    )
}

/// Whether a commit waits for the WAL flush (Postgres's `synchronous_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commits {
    Durable,
    Asynchronous,
}

fn pool_of(
    config: &PostgresConfig,
    max_connections: u32,
    statement_timeout_secs: u32,
    commits: Commits,
) -> Result<sqlx::PgPool> {
    let options = postgres_options(&config.url)?;
    let mut settings = vec![
        ("statement_timeout", format!("{statement_timeout_secs}s")),
        ("lock_timeout", format!("{}s", config.lock_timeout_secs)),
    ];
    if commits == Commits::Asynchronous {
        settings.push(("synchronous_commit", "off".into()));
    }
    let options = options.options(settings);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // A connection used a moment ago is alive; testing it before every use is a second
        // round trip per request for the API and Postgres both (its cost was inside the noise
        // of `vigil bench api`, BENCHMARKS.md). One idle for a while (across a Postgres restart,
        // say) is tested, as pgbouncer's `server_check_delay` does.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                Ok(meta.idle_for < IDLE_BEFORE_TEST || connection.ping().await.is_ok())
            })
        })
        .connect_lazy_with(options))
}

/// The connection options of a Postgres URL. TLS is as the URL (or `PGSSLMODE`) asks, except
/// that a loopback server with no `sslmode` asked is spoken to in the clear: sqlx's default,
/// `prefer`, would encrypt every byte on both sides of a connection that never leaves the
/// machine, protecting it from no one who could not read the processes' memory anyway (its
/// cost to the alert queue is in BENCHMARKS.md), as libpq never uses TLS on a Unix socket.
pub fn postgres_options(url: &str) -> Result<PgConnectOptions> {
    let options: PgConnectOptions = url.parse().context("postgres.url")?;
    let asked = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|p| p.starts_with("sslmode=") || p.starts_with("ssl-mode="))
    }) || std::env::var_os("PGSSLMODE").is_some();
    if asked || !is_loopback(options.get_host()) {
        return Ok(options);
    }
    Ok(options.ssl_mode(sqlx::postgres::PgSslMode::Disable))
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The intake, hearing the decisions its waiting requests expect on Redis.
fn intake(config: &Config, registry: &prometheus::Registry) -> Result<Intake> {
    let replies =
        intake::Replies::start(&config.redis.url, &config.redis.prefix).context("redis.url")?;
    Ok(Intake::new(
        &config.kafka.cluster(),
        &config.ingest,
        tokenizer(config),
        Some(replies),
        registry,
    )?)
}

/// The intake's routes, for keys of the ingest (or admin) role.
fn intake_router(intake: Intake, keys: Arc<Keys>) -> Router {
    intake::router(intake).route_layer(axum::middleware::from_fn_with_state(
        Guard {
            keys,
            allowed: auth::INGEST,
        },
        auth::require,
    ))
}

fn api_router(
    config: &Config,
    registry: &prometheus::Registry,
    pool: sqlx::PgPool,
    keys: Arc<Keys>,
) -> Result<Router> {
    let api = Api::new(ApiParts {
        pool,
        card_reads: card_reads_pool(&config.postgres)?,
        keys,
        redis_url: &config.redis.url,
        redis_prefix: &config.redis.prefix,
        kafka: &config.kafka.cluster(),
        producer: &config.ingest.producer,
        tokenizer: tokenizer(config),
        audit: config.audit_trail(),
        config: config.api.clone(),
        engine: config.engine.clone(),
        registry,
    })?;
    Ok(vigil_api::router(api))
}

type Scorer = tokio::task::JoinHandle<Result<()>>;

/// Starts the scoring loop on a thread of its own.
fn start_scoring(
    config: &Config,
    registry: &prometheus::Registry,
    stop: &CancellationToken,
    pool: sqlx::PgPool,
) -> Result<Scorer> {
    let parts = ServiceParts {
        kafka: config.kafka.cluster(),
        config: config.scoring.clone(),
        engine: config.engine.clone(),
        rules: load_rules(config.scoring.rules.as_deref())?,
        pool,
        redis_url: config.redis.url.clone(),
        redis_prefix: config.redis.prefix.clone(),
        tokenizer: tokenizer(config),
        metrics: ScoringMetrics::register(registry)?,
    };
    let handle = tokio::runtime::Handle::current();
    let stop = stop.clone();
    Ok(tokio::task::spawn_blocking(move || {
        let result = service::run(parts, &stop, &handle);
        // A service that stops on its own takes the process down with it.
        stop.cancel();
        result.map_err(anyhow::Error::from)
    }))
}

type Server = tokio::task::JoinHandle<std::io::Result<()>>;

/// Serves `router` on `listen` until `stop`.
async fn serve(
    listen: &str,
    router: Router,
    stop: &CancellationToken,
) -> Result<(SocketAddr, Server)> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening");
    let stop = stop.clone();
    let server = tokio::spawn(async move {
        // The client's address reaches the key guard (a limit on lookups per address).
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok((address, server))
}

/// Stops everything at SIGTERM or Ctrl-C.
async fn stop_on_signal(stop: CancellationToken) {
    tokio::select! {
        () = shutdown_signal() => stop.cancel(),
        () = stop.cancelled() => {},
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested");
}
