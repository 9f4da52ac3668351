//! A first run that needs nothing running: when the configured Postgres or Redis cannot be
//! reached, `vigil demo` starts a private, throwaway one where its programs are installed
//! (`initdb` and `pg_ctl`, `redis-server`), in a temporary directory on a free port, and stops
//! and removes it when the demo ends; where they are not installed, it says how to start them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use vigil_app::config::Config;

/// The private services started, stopped when dropped.
#[derive(Debug, Default)]
pub struct Private {
    postgres: Option<PrivatePostgres>,
    redis: Option<PrivateRedis>,
}

/// Points `config` at private instances of whichever of Postgres and Redis it cannot reach.
pub async fn ensure(config: &mut Config) -> Result<Private> {
    let mut private = Private::default();
    if let Err(e) = postgres_reachable(&config.postgres.url).await {
        private.postgres = Some(replace(&mut config.postgres.url, &e)?);
    }
    if let Err(e) = redis_reachable(&config.redis.url).await {
        private.redis = Some(replace(&mut config.redis.url, &e)?);
    }
    Ok(private)
}

/// A server the demo can run for itself.
trait Server: Sized {
    const NAME: &str;
    /// How a user starts one, where the demo cannot.
    const HOW: &str;
    fn start() -> Result<Self>;
    fn url(&self) -> String;
}

/// A private `S` in place of the one at `url`, which answered `error`; `url` becomes its own.
fn replace<S: Server>(url: &mut String, error: &str) -> Result<S> {
    let started = S::start()
        .map_err(|why| anyhow::anyhow!("{}", not_reachable(S::NAME, url, error, &why, S::HOW)))?;
    *url = started.url();
    eprintln!(
        "{} is not reachable ({error}): started a private one for this demo at {url} (removed \
         when it stops)",
        S::NAME
    );
    Ok(started)
}

const POSTGRES_HOW: &str = "\
  Debian/Ubuntu: sudo apt-get install postgresql (it starts at once; allow the demo's user, e.g.
                 trust for 127.0.0.1 in pg_hba.conf, or set VIGIL__POSTGRES__URL with a password)
  macOS:         brew install postgresql@16 && brew services start postgresql@16
  Docker:        docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16
                 (or `docker compose up -d postgres redis` in Vigil's repository)";

const REDIS_HOW: &str = "\
  Debian/Ubuntu: sudo apt-get install redis-server
  macOS:         brew install redis && brew services start redis
  Docker:        docker run -d -p 6379:6379 redis:7
                 (or `docker compose up -d postgres redis` in Vigil's repository)";

/// What to do when `what` at `url` is down and no private one could be started.
fn not_reachable(what: &str, url: &str, error: &str, why: &anyhow::Error, how: &str) -> String {
    format!(
        "{what} is not reachable at {url} ({error}), and no private one could be started \
         ({why:#}). Start one, or install it so that `vigil demo` can start its own:\n{how}"
    )
}

async fn postgres_reachable(url: &str) -> Result<(), String> {
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(|e| format!("{e}"))?;
    let connecting = sqlx::ConnectOptions::connect(&options);
    match tokio::time::timeout(Duration::from_secs(3), connecting).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".into()),
    }
}

async fn redis_reachable(url: &str) -> Result<(), String> {
    let client = vigil_common::redis::client(url).map_err(|e| e.to_string())?;
    let connecting = client.get_multiplexed_async_connection();
    match tokio::time::timeout(Duration::from_secs(3), connecting).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".into()),
    }
}

/// `program` on the `PATH`, or in one of the places packages put it off the `PATH`.
fn find(program: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>());
    // Debian keeps the server's programs in /usr/lib/postgresql/<version>/bin; Homebrew's
    // versioned formulae are not linked.
    let packaged = ["/usr/lib/postgresql", "/opt/homebrew/opt", "/usr/local/opt"]
        .into_iter()
        .flat_map(|root| std::fs::read_dir(root).into_iter().flatten().flatten())
        .map(|entry| entry.path().join("bin"));
    on_path
        .chain(packaged)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Postgres refuses to run as root: there, its programs run as the `postgres` user.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) -> Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| what.to_owned())?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[derive(Debug)]
struct PrivatePostgres {
    dir: tempfile::TempDir,
    pg_ctl: PathBuf,
    port: u16,
}

impl Server for PrivatePostgres {
    const NAME: &str = "Postgres";
    const HOW: &str = POSTGRES_HOW;

    fn start() -> Result<Self> {
        let initdb = find("initdb").context("initdb is not installed")?;
        let pg_ctl = find("pg_ctl").context("pg_ctl is not installed")?;
        let dir = tempfile::Builder::new()
            .prefix("vigil-demo-postgres")
            .tempdir()?;
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres").arg(dir.path());
            run(chown, "handing the directory to the postgres user")?;
        }
        let data = dir.path().join("data");
        let mut init = as_server_user(&initdb);
        init.arg("-D").arg(&data);
        init.args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        run(init, "initdb")?;
        let port = free_port()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let mut start = as_server_user(&pg_ctl);
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"));
        start.args(["-o", &options, "-w", "-t", "60", "start"]);
        run(start, "pg_ctl start")?;
        Ok(Self { dir, pg_ctl, port })
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut stop = as_server_user(&self.pg_ctl);
        stop.arg("-D").arg(self.dir.path().join("data"));
        stop.args(["-m", "immediate", "-w", "stop"]);
        if let Err(e) = run(stop, "pg_ctl stop") {
            eprintln!("the demo's private Postgres did not stop: {e:#}");
        }
    }
}

#[derive(Debug)]
struct PrivateRedis {
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Server for PrivateRedis {
    const NAME: &str = "Redis";
    const HOW: &str = REDIS_HOW;

    fn start() -> Result<Self> {
        let server = find("redis-server").context("redis-server is not installed")?;
        let dir = tempfile::Builder::new()
            .prefix("vigil-demo-redis")
            .tempdir()?;
        let port = free_port()?;
        let child = Command::new(server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("redis-server")?;
        let redis = Self {
            _dir: dir,
            child,
            port,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("redis-server did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_to_do_names_the_url_the_error_and_each_way() {
        let why = anyhow::anyhow!("initdb is not installed");
        let text = not_reachable(
            "Postgres",
            "postgres://x@127.0.0.1:1/p",
            "refused",
            &why,
            POSTGRES_HOW,
        );
        for part in [
            "127.0.0.1:1",
            "refused",
            "initdb is not installed",
            "apt-get",
            "brew",
            "docker run",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }
}
