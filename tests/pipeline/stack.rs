//! The whole system as a user runs it: `vigil dev-broker` in a process of its own, the local
//! Postgres (a fresh database per test) and Redis (a fresh key prefix per test), and `vigil`
//! services started, killed and restarted as processes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::tls::LocalCertificate;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL: &str = "redis://127.0.0.1:6379";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test run) uses.
pub fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{what}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A process that is killed when dropped.
pub struct Process {
    pub child: Child,
    /// Where its standard error goes.
    pub log: PathBuf,
}

impl Process {
    /// Starts `command` with its standard error to `log` and reads its standard output up to
    /// the line that starts with `last` (or its end); returns those lines.
    pub fn spawn(mut command: Command, log: PathBuf, last: &str) -> (Self, Vec<String>) {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = vec![];
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let done = line.starts_with(last);
            lines.push(line.trim().to_owned());
            if done {
                break;
            }
        }
        // What it prints later (the demo's live line) is read and let go, never left to fill
        // the pipe or to find it closed.
        std::thread::spawn(move || out.lines().for_each(drop));
        (Self { child, log }, lines)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }

    /// SIGTERM, then waits at most `limit` for it to exit; `None` if it is still running.
    pub fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The embedded broker, in its own process so that services can be killed independently.
pub struct Broker {
    _process: Process,
    pub address: String,
}

impl Broker {
    pub fn start(dir: &Path, partitions: u32) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command
            .args(["dev-broker", "--partitions", &partitions.to_string()])
            .env_clear();
        // Its first line is its address.
        let (process, lines) = Process::spawn(command, dir.join("broker.log"), "");
        Self {
            _process: process,
            address: lines.concat(),
        }
    }
}

/// Tansu (crates.io `tansu`), a Kafka-compatible broker in a process of its own that keeps its
/// topics in `SQLite`, so that it can be killed and restarted with its data. Its binary is
/// `$VIGIL_TANSU` (`.ci/run` builds it once and caches it).
pub struct Tansu {
    process: Process,
    binary: PathBuf,
    storage: String,
    pub address: String,
    advertised: String,
}

impl Tansu {
    /// The binary to run, if the environment names one.
    pub fn binary() -> Option<PathBuf> {
        let binary = PathBuf::from(std::env::var_os("VIGIL_TANSU")?);
        assert!(
            binary.exists(),
            "VIGIL_TANSU={} does not exist",
            binary.display()
        );
        Some(binary)
    }

    /// A broker on a free port, keeping its data under `dir`.
    pub fn start(binary: PathBuf, dir: &Path) -> Self {
        Self::start_advertising(binary, dir, None)
    }

    /// [`Tansu::start`], telling clients to connect to `advertised` (a proxy in front of it)
    /// when given.
    pub fn start_advertising(binary: PathBuf, dir: &Path, advertised: Option<&str>) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let advertised = advertised.unwrap_or(&address).to_owned();
        // Relative to the broker's working directory, `dir`.
        let storage = "sqlite://tansu.db".to_owned();
        let process = Self::spawn(&binary, &storage, &address, &advertised, dir);
        Self {
            process,
            binary,
            storage,
            address,
            advertised,
        }
    }

    /// SIGKILL, then the broker again on the same port and data.
    pub fn kill_and_restart(&mut self, down_for: Duration) {
        self.process.kill();
        std::thread::sleep(down_for);
        let dir = self.process.log.parent().unwrap().to_owned();
        self.process = Self::spawn(
            &self.binary,
            &self.storage,
            &self.address,
            &self.advertised,
            &dir,
        );
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    fn spawn(binary: &Path, storage: &str, address: &str, advertised: &str, dir: &Path) -> Process {
        let listener = format!("tcp://{address}");
        let advertised = format!("tcp://{advertised}");
        let log = dir.join(unique("tansu"));
        let child = Command::new(binary)
            .current_dir(dir)
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", storage])
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .expect("tansu runs");
        let process = Process { child, log };
        let started = Instant::now();
        while std::net::TcpStream::connect(address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not start: {}",
                process.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One deployment: a database, a Redis prefix and a consumer group, on a broker.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub brokers: String,
    pub database: String,
    pub prefix: String,
    pub group: String,
    /// A key of the ingest role, for posting to the intake.
    pub ingest_key: String,
    /// More of the configuration, for every command.
    env: Vec<(String, String)>,
}

impl Stack {
    /// A new deployment on `brokers`, migrated.
    pub fn new(brokers: &str) -> Self {
        Self::with_env(brokers, &[])
    }

    /// A new deployment on `brokers` whose every command has `env` too, migrated.
    pub fn with_env(brokers: &str, env: &[(&str, &str)]) -> Self {
        let mut stack = Self {
            dir: tempfile::tempdir().unwrap(),
            brokers: brokers.to_owned(),
            database: unique("vigil_test"),
            prefix: unique("vigil_test"),
            group: unique("scoring"),
            ingest_key: String::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        // Migrated as the tables' owner; every other command runs as the services' role.
        let migrated = stack
            .command(&["migrate"])
            .env("VIGIL__POSTGRES__URL", stack.database_url())
            .env("VIGIL__POSTGRES__APP_USER", SERVICE_USER)
            .output()
            .unwrap();
        assert!(
            migrated.status.success(),
            "{}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        stack.ingest_key = stack.create_key("ingest", "feeder");
        stack
    }

    /// `vigil keys create`: a new key of `role`.
    pub fn create_key(&self, role: &str, name: &str) -> String {
        self.run(&["keys", "create", "--role", role, "--name", name])
            .trim()
            .to_owned()
    }

    /// Runs `vigil ARGS` against the stack; returns its standard output, or panics with its
    /// standard error.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "vigil {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Posts `lines` (NDJSON) to the intake at `address` in requests of `chunk` lines, with
    /// the ingest key; every request must be accepted.
    pub fn post_ndjson(&self, address: &str, path: &str, lines: &[String], chunk: usize) {
        let client = reqwest::blocking::Client::new();
        for part in lines.chunks(chunk) {
            let response = client
                .post(format!("{address}{path}"))
                .bearer_auth(&self.ingest_key)
                .header("content-type", "application/x-ndjson")
                .body(part.join("\n"))
                .send()
                .unwrap();
            assert_eq!(response.status(), 202, "{}", response.text().unwrap());
        }
    }

    /// The database as its owner (the superuser) reaches it, for the tests' own reads and
    /// tampering.
    pub fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.database)
    }

    /// The database as the services reach it: a member of `vigil_app`, as deployed.
    fn service_url(&self) -> String {
        format!("postgres://{SERVICE_USER}@127.0.0.1:5432/{}", self.database)
    }

    /// `vigil ARGS` configured for this deployment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("VIGIL__PAN_KEY", TEST_PAN_KEY)
            .env("VIGIL__KAFKA__BROKERS", &self.brokers)
            .env("VIGIL__POSTGRES__URL", self.service_url())
            .env("VIGIL__REDIS__URL", REDIS_URL)
            .env("VIGIL__REDIS__PREFIX", &self.prefix)
            .env("VIGIL__INGEST__LISTEN", "127.0.0.1:0")
            .env("VIGIL__OPS__LISTEN", "127.0.0.1:0")
            .env("VIGIL__SCORING__GROUP", &self.group)
            .env("VIGIL__SCORING__SNAPSHOT_INTERVAL_SECS", "1")
            .env("VIGIL__SCORING__SNAPSHOT_MIN_MESSAGES", "0")
            .env("VIGIL__SCORING__SESSION_TIMEOUT_MS", "3000")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Starts `vigil ARGS` (a service) and waits until it listens; returns it with the address
    /// of its public routes (empty for the scorer, which has none) and of its operations routes.
    pub fn service(&self, args: &[&str], extra_env: &[(&str, &str)]) -> (Process, String, String) {
        let log = self.dir.path().join(format!("{}.log", unique(args[0])));
        let mut command = self.command(args);
        command.envs(extra_env.iter().copied());
        let (process, lines) = Process::spawn(command, log, OPS_LINE);
        let after = |prefix: &str| {
            lines
                .iter()
                .find_map(|line| line.strip_prefix(prefix))
                .map(str::to_owned)
        };
        let ops =
            after(OPS_LINE).unwrap_or_else(|| panic!("{args:?} did not start: {}", process.logs()));
        (process, after("listening on ").unwrap_or_default(), ops)
    }

    pub fn query_i64(&self, sql: &str) -> i64 {
        self.query_one::<(i64,)>(sql).0
    }

    /// The one row `sql` returns.
    pub fn query_one<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let url = self.database_url();
        runtime().block_on(async {
            let mut c = connect(&url).await;
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
    }

    /// Closes this deployment's database to new connections and ends the open ones (Postgres
    /// down, as the services see it), or opens it again.
    pub fn refuse_connections(&self, refuse: bool) {
        let db = &self.database;
        admin(&format!(
            "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS {}",
            !refuse
        ));
        if refuse {
            admin(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
            ));
        }
    }

    /// Runs `sql` on this deployment's database.
    pub fn execute(&self, sql: &str) {
        if let Err(e) = self.try_execute(sql) {
            panic!("{sql}: {e}");
        }
    }

    pub fn try_execute(&self, sql: &str) -> Result<(), String> {
        let url = self.database_url();
        runtime().block_on(async {
            let mut c = connect(&url).await;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }

    /// transaction id -> decision, of every decision made.
    pub fn decisions(&self) -> BTreeMap<String, String> {
        self.pairs("SELECT transaction_id, decision FROM decisions")
    }

    /// transaction id -> decision, of every alert.
    pub fn alerts(&self) -> BTreeMap<String, String> {
        self.pairs("SELECT transaction_id, decision FROM alerts")
    }

    /// The Redis keys of this deployment.
    pub fn redis_keys(&self) -> Vec<String> {
        let mut c = redis::Client::open(REDIS_URL)
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut c)
            .unwrap()
    }

    /// The first two columns of `sql`'s rows, as a map.
    pub fn pairs_of(&self, sql: &str) -> BTreeMap<String, String> {
        self.pairs(sql)
    }

    fn pairs(&self, sql: &str) -> BTreeMap<String, String> {
        let url = self.database_url();
        runtime().block_on(async {
            let mut c = connect(&url).await;
            let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut c)
                .await
                .unwrap();
            rows.into_iter().collect()
        })
    }

    /// Waits until `count` decisions are committed.
    pub fn wait_for_decisions(&self, count: i64) {
        let mut n = 0;
        wait_until("the decisions", || {
            n = self.query_i64("SELECT count(*) FROM decisions");
            assert!(n <= count, "{n} decisions of {count} transactions");
            n == count
        });
    }
}

/// Polls `done` until it holds; fails naming `what` after [`crate::WAIT`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < crate::WAIT,
            "waited {:?} for {what}",
            crate::WAIT
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let db = self.database.clone();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            admin(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
        }));
        drop(dropped);
    }
}

/// A connection to the database at `url`.
async fn connect(url: &str) -> sqlx::PgConnection {
    <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// Runs SQL on the server's admin database (to close or drop a deployment's database).
pub fn admin(sql: &str) {
    runtime().block_on(async {
        let mut c = connect(ADMIN_URL).await;
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    });
}

/// Generated data: (transactions as NDJSON lines, the file's path).
pub fn generate(dir: &Path, days: u32, cards: u32) -> (Vec<String>, PathBuf) {
    let out = dir.join("data");
    let status = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "generate",
            "--out",
            out.to_str().unwrap(),
            "--days",
            &days.to_string(),
            "--cards",
            &cards.to_string(),
            "--merchants",
            "60",
            "--seed",
            "7",
        ])
        .env_clear()
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let path = out.join("transactions.ndjson");
    let lines = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, path)
}

/// What a service says of its operations listener.
const OPS_LINE: &str = "operations on ";

/// The login role the stack's services connect as (`postgres.app_user`).
const SERVICE_USER: &str = "vigil_test_service";

/// The services' `pan_key` in these tests (and the backtests they are compared with).
pub const TEST_PAN_KEY: &str = "pipeline-tests-key-0123456789abcdef";

/// transaction id -> decision, as `vigil backtest` decides without labels, with the stream in
/// `partitions` partitions (as the scorer tests' broker has them).
pub fn backtest(dir: &Path, transactions: &Path, partitions: u32) -> BTreeMap<String, String> {
    backtest_with_rules(dir, transactions, partitions, None)
        .into_iter()
        .map(|(id, (decision, _))| (id, decision))
        .collect()
}

/// transaction id -> (decision, reasons), as `vigil backtest` decides without labels, with the
/// stream in `partitions` partitions and the rules of `rules` (the default rules without).
pub fn backtest_with_rules(
    dir: &Path,
    transactions: &Path,
    partitions: u32,
    rules: Option<&Path>,
) -> BTreeMap<String, (String, String)> {
    let scores = dir.join("scores.csv");
    let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
    command.args([
        "backtest",
        "--partitions",
        &partitions.to_string(),
        "--transactions",
        transactions.to_str().unwrap(),
        "--out",
        scores.to_str().unwrap(),
    ]);
    if let Some(rules) = rules {
        command.args(["--rules", rules.to_str().unwrap()]);
    }
    let out = command
        .current_dir(dir)
        .env_clear()
        .env("VIGIL__PAN_KEY", TEST_PAN_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_path(&scores).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, decision, reasons) = (
        column("transaction_id"),
        column("decision"),
        column("reasons"),
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[id].to_owned(),
                (r[decision].to_owned(), r[reasons].to_owned()),
            )
        })
        .collect()
}

/// The payloads of the first `at_least` messages of `topic` (waiting for them), as text.
pub fn topic_payloads(brokers: &str, topic: &str, at_least: usize) -> Vec<String> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("peek"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut payloads = vec![];
    let started = Instant::now();
    while payloads.len() < at_least && started.elapsed() < Duration::from_mins(1) {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            payloads.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    payloads
}

/// The first `at_least` dead letters (waiting for them): each payload with its `error` header.
pub fn dead_letters(brokers: &str, at_least: usize) -> Vec<(String, Option<String>)> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("dead"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["dead-letters.v1"]).unwrap();
    let mut letters = vec![];
    let started = Instant::now();
    while letters.len() < at_least && started.elapsed() < crate::WAIT {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            let error = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "error"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            letters.push((
                String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
                error,
            ));
        }
    }
    letters
}

/// The transaction ids of every record on `topic` now (each as often as it is there).
pub fn topic_transaction_ids(brokers: &str, topic: &str) -> Vec<String> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("peek"))
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let mut ends = BTreeMap::new();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).unwrap();
        if high > low {
            ends.insert(p.id(), high);
            assignment
                .add_partition_offset(topic, p.id(), rdkafka::Offset::Offset(low))
                .unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let mut ids = vec![];
    let started = Instant::now();
    while !ends.is_empty() {
        assert!(
            started.elapsed() < crate::WAIT,
            "reading {topic} to its end"
        );
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let record: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        ids.push(record["transaction_id"].as_str().unwrap().to_owned());
        if ends
            .get(&m.partition())
            .is_some_and(|&end| m.offset() + 1 >= end)
        {
            ends.remove(&m.partition());
        }
    }
    ids
}

/// The value of an unlabelled metric on the `/metrics` page of the service at `address`.
pub fn metric(address: &str, name: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{address}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// A Redis server of the test's own, which it can stop (the machine's is shared).
pub struct RedisServer {
    process: Process,
    url: String,
}

impl RedisServer {
    /// A Redis that speaks only TLS on `port`, with `certificate`, and wants `password`.
    pub fn start_tls(
        dir: &Path,
        port: u16,
        certificate: &LocalCertificate,
        password: &str,
    ) -> Self {
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (cert, key) = (
            file("redis.pem", &certificate.pem),
            file("redis-key.pem", &certificate.key_pem),
        );
        let tls: Vec<std::ffi::OsString> = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string().into(),
            "--tls-cert-file".into(),
            cert.into(),
            "--tls-key-file".into(),
            key.into(),
            "--tls-auth-clients".into(),
            "no".into(),
            "--requirepass".into(),
            password.into(),
        ];
        // The test process does not trust the certificate: it waits for the port.
        let listening = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let url = format!("rediss://:{password}@127.0.0.1:{port}");
        Self::launch(dir, port, tls, url, listening)
    }

    pub fn start(dir: &Path, port: u16) -> Self {
        let url = format!("redis://127.0.0.1:{port}");
        let answers = || {
            redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .is_ok()
        };
        let plain = vec!["--port".into(), port.to_string().into()];
        Self::launch(dir, port, plain, url.clone(), answers)
    }

    /// `redis-server` with `args`, on loopback and keeping nothing, once `ready`.
    fn launch(
        dir: &Path,
        port: u16,
        args: Vec<std::ffi::OsString>,
        url: String,
        ready: impl Fn() -> bool,
    ) -> Self {
        let log = dir.join(format!("redis-{port}.log"));
        let child = Command::new("redis-server")
            .args(args)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir)
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("redis-server runs");
        let started = Instant::now();
        while !ready() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            process: Process { child, log },
            url,
        }
    }

    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// How many cards have their risk stored under `prefix`.
    pub fn card_risks(&self, prefix: &str) -> usize {
        let mut c = redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(vigil_schema::redis_keys::cards_pattern(prefix))
            .query(&mut c)
            .unwrap();
        keys.len()
    }
}
