//! A `vigil` service as a process of its own, as the benchmarks run them: started with its
//! configuration in `VIGIL__*` variables, its address read from its first line, killed when
//! dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::scrape::Scrape;

pub struct Service {
    child: Child,
    pub address: String,
}

impl Service {
    /// `vigil COMMAND` with `env`; logs at `warn` unless `RUST_LOG` says otherwise.
    pub fn spawn(command: &str, env: &[(&str, &str)]) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(command)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("`vigil {command}` did not start"))?
            .to_owned();
        Ok(Self { child, address })
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
        Ok(Scrape::parse(&http_get(&self.address, "/metrics")?))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP GET over a TCP stream (the metrics page of a local process).
fn http_get(address: &str, path: &str) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let host = address.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}
