//! `vigil demo` on a machine whose Postgres and Redis cannot be reached: it starts private,
//! throwaway ones, runs on them, and removes them when stopped.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stack::{Process, free_port};

fn after<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {lines:?}"))
}

#[test]
fn the_demo_starts_private_postgres_and_redis_when_none_is_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let (postgres_port, redis_port) = (free_port(), free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
    command
        .args(["demo", "--days", "2", "--cards", "500", "--rate", "1000"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "VIGIL__POSTGRES__URL",
            format!("postgres://postgres@127.0.0.1:{postgres_port}/postgres"),
        )
        .env(
            "VIGIL__REDIS__URL",
            format!("redis://127.0.0.1:{redis_port}"),
        )
        .env("VIGIL__INGEST__LISTEN", "127.0.0.1:0")
        .env("VIGIL__OPS__LISTEN", "127.0.0.1:0");
    let (mut demo, lines) = Process::spawn(command, dir.path().join("demo.log"), "Decisions");
    let logs = demo.logs();
    assert_eq!(
        logs.matches("started a private one for this demo").count(),
        2,
        "{lines:?} {logs}"
    );
    let private = logs
        .split("started a private one for this demo at postgres://postgres@127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let console = after(&lines, "Investigators' console: ");
    let address = console.split("/console/").next().unwrap();
    let key = after(&lines, "admin API key: ");

    let client = reqwest::blocking::Client::new();
    let sign_in = client
        .get(format!("{address}/console/sign-in"))
        .send()
        .unwrap();
    assert_eq!(sign_in.status(), 200);
    let started = Instant::now();
    loop {
        let page: Value = client
            .get(format!("{address}/v1/alerts?limit=1"))
            .bearer_auth(key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if page["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_mins(2),
            "no alert from the demo: {}",
            demo.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    assert!(demo.terminate().success(), "{}", demo.logs());
    let port: u16 = private.parse().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the private Postgres is stopped"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err(),
        "nothing took the configured Redis port"
    );
}
