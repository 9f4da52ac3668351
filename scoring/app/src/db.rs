//! Postgres for command-line work: a small pool, and the audit trail's actor.

use anyhow::{Context, Result};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::Config;

/// Runs `work` against the configured Postgres, on a runtime of its own.
pub fn block_on<F, T>(config: &Config, work: F) -> Result<T>
where
    F: AsyncFnOnce(PgPool) -> Result<T>,
{
    crate::serve::init_logs_at("warn");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async { work(connect(config).await?).await })
}

/// A small pool on the configured Postgres, for command-line work.
pub async fn connect(config: &Config) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(crate::serve::postgres_options(&config.postgres.url)?)
        .await
        .context("connecting to postgres (run `vigil migrate` first)")
}

/// The operating-system user, as the audit trail's actor.
pub fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli (user {user})")
}

/// Moves a model to `to`, audited as done from the command line (with the services' audit key,
/// which `config` must have).
pub async fn set_status(
    pool: &PgPool,
    config: &Config,
    version: &str,
    to: vigil_registry::Status,
) -> Result<vigil_registry::ModelInfo> {
    config.check_secrets()?;
    vigil_api::registry::set_status(pool, &config.audit_trail(), &actor(), version, to)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}
