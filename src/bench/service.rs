//! A `vigil` service as a process of its own, as the benchmarks run them: started with its
//! configuration in `VIGIL__*` variables, its address read from its first line, killed when
//! dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use vigil_common::scrape::Scrape;

/// The services' `pan_key` in the benchmarks, which only see generated cards.
pub const BENCH_PAN_KEY: &str = "the benchmarks' key, for generated cards";

/// The audit trail as the benchmarks' services key it.
pub fn bench_audit_trail() -> vigil_api::audit::Trail {
    vigil_app::config::Config {
        pan_key: BENCH_PAN_KEY.into(),
        ..Default::default()
    }
    .audit_trail()
}

pub struct Service {
    child: Child,
    /// The public routes (none for the scorer).
    pub address: String,
    /// `/metrics`, `/health`, `/ready`.
    pub ops: String,
}

impl Service {
    /// `vigil COMMAND` with `env`; logs at `warn` unless `RUST_LOG` says otherwise.
    pub fn spawn(command: &str, env: &[(&str, &str)]) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(command)
            // Generated cards only: a key for the benchmarks, which `env` may replace.
            .env("VIGIL__PAN_KEY", BENCH_PAN_KEY)
            .env("VIGIL__OPS__LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .spawn()?;
        // `listening on ADDRESS` (but for the scorer), then `operations on ADDRESS`.
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut address = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line)? == 0 {
                bail!("`vigil {command}` did not start");
            }
            if let Some(public) = line.trim().strip_prefix("listening on ") {
                public.clone_into(&mut address);
            }
            if let Some(ops) = line.trim().strip_prefix("operations on ") {
                let ops = ops.to_owned();
                return Ok(Self {
                    child,
                    address,
                    ops,
                });
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The most memory the process has held (`VmHWM`).
    pub fn peak_memory_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM")?;
        Ok(kib / 1024.0)
    }

    pub fn metrics(&self) -> Result<Scrape> {
        let url = format!("http://{}/metrics", self.ops.trim_start_matches("http://"));
        let text = reqwest::blocking::get(&url)
            .and_then(reqwest::blocking::Response::error_for_status)
            .and_then(reqwest::blocking::Response::text)
            .with_context(|| format!("reading {url}"))?;
        Ok(Scrape::parse(&text))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The benchmark's database at `url`, made anew and migrated unless `reuse`, with a pool of
/// two connections on it.
pub async fn database(url: &str, reuse: bool) -> Result<sqlx::PgPool> {
    if !reuse {
        vigil_app::migrate::drop_database(url).await?;
        vigil_app::migrate::migrate_postgres(url).await?;
    }
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .context("connecting to postgres")
}
