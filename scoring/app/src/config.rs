//! Vigil's configuration, loaded in layers: built-in defaults, then a TOML file (`--config`, or
//! `vigil.toml` in the working directory when it exists), then `VIGIL__*` environment variables
//! (`VIGIL__ENGINE__REVIEW_THRESHOLD=0.6` sets `engine.review_threshold`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{Context, Result, bail};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use vigil_api::ApiConfig;
use vigil_api::audit::{Checkpoints, Trail};
use vigil_common::kafka::Cluster;
use vigil_engine::EngineConfig;
use vigil_ingest::http::IntakeConfig;
use vigil_scoring::service::ServiceConfig;

const DEFAULT_FILE: &str = "vigil.toml";
const ENV_PREFIX: &str = "VIGIL__";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Secret key of the HMAC that replaces raw card numbers by tokens (at ingest, and in the
    /// scoring service for events produced to Kafka directly). Keep it stable: a card's token,
    /// and so its history, changes with it.
    pub pan_key: String,
    /// The audit trail's key and checkpoints.
    pub audit: AuditConfig,
    /// How the scoring engine scores, decides and learns.
    pub engine: EngineConfig,
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    /// The HTTP intake (`vigil ingest`, `vigil serve`).
    pub ingest: IntakeConfig,
    /// The scoring service (`vigil score`, `vigil serve`).
    pub scoring: ServiceConfig,
    /// The investigator API (`vigil api`, `vigil serve`).
    pub api: ApiConfig,
    /// The operations listener of every service.
    pub ops: OpsConfig,
}

impl Config {
    /// Refuses a `pan_key` (or an `audit.key`, when set) that is missing, short or published: a
    /// service that tokenizes card numbers with it would make tokens anyone can tie back to their
    /// card, and an audit chain anyone can recompute.
    pub fn check_secrets(&self) -> Result<()> {
        if let Some(why) = weakness(&self.pan_key) {
            bail!(
                "pan_key {why}: set VIGIL__PAN_KEY (or pan_key in vigil.toml) to a secret of your \
                 own, e.g. `openssl rand -hex 32`, and keep it: a card's token, and so its \
                 history, depends on it. (`vigil demo` makes one for itself.)"
            )
        }
        if let Some(why) = Some(&self.audit.key)
            .filter(|key| !key.is_empty())
            .and_then(|key| weakness(key))
        {
            bail!(
                "audit.key {why}: set VIGIL__AUDIT__KEY to a secret of your own, e.g. `openssl \
                 rand -hex 32`, or leave it empty to derive it from pan_key"
            )
        }
        Ok(())
    }

    /// The audit trail, keyed by `audit.key`, or by a key derived from `pan_key` when it is
    /// empty (an HMAC of a fixed label: knowing it tells nothing of `pan_key`).
    pub fn audit_trail(&self) -> Trail {
        if !self.audit.key.is_empty() {
            return Trail::new(self.audit.key.as_bytes());
        }
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.pan_key.as_bytes())
            .expect("HMAC takes any key");
        mac.update(b"vigil audit chain");
        Trail::new(&mac.finalize().into_bytes())
    }
}

/// Why `key` is no secret, if it is not.
fn weakness(key: &str) -> Option<&'static str> {
    if KNOWN_PAN_KEYS.contains(&key) {
        Some("is a published key")
    } else if key.len() < MIN_PAN_KEY_BYTES {
        Some("is shorter than 32 bytes")
    } else {
        None
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pan_key: DEVELOPMENT_PAN_KEY.into(),
            audit: AuditConfig::default(),
            engine: EngineConfig::default(),
            kafka: KafkaConfig::default(),
            postgres: PostgresConfig::default(),
            redis: RedisConfig::default(),
            ingest: IntakeConfig::default(),
            scoring: ServiceConfig::default(),
            api: ApiConfig::default(),
            ops: OpsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Address of `/metrics`, `/health` and `/ready`, apart from the public routes: loopback
    /// unless the network to it is private (a Prometheus beside the service, say). Unset: port
    /// 9464 of loopback for `vigil serve` and `vigil score`, 9465 for `vigil ingest`, 9466 for
    /// `vigil api`, so that they can run side by side on one host.
    pub listen: Option<String>,
}

/// The development key for card-number tokens: for backtests, training and tests on files, which
/// the services refuse (see [`Config::check_secrets`]).
pub const DEVELOPMENT_PAN_KEY: &str = "vigil-development-key-change-me";

/// Keys published somewhere (in this repository, or its history): never secret.
const KNOWN_PAN_KEYS: [&str; 2] = [DEVELOPMENT_PAN_KEY, "change-me-to-a-secret"];

/// The shortest `pan_key` a service takes: 32 bytes, as `openssl rand -hex 16` gives.
pub const MIN_PAN_KEY_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Key of the HMAC that chains the audit records: a secret of at least 32 bytes, kept
    /// outside Postgres. Empty: derived from `pan_key`.
    pub key: String,
    /// A file (outside the database, ideally on other storage) to which `vigil serve` / `vigil
    /// api` append the newest record's checkpoint each `checkpoint_every_secs` the trail has grown;
    /// `vigil audit verify --checkpoints FILE` then finds removed records. Unset: none.
    pub checkpoint_file: Option<PathBuf>,
    pub checkpoint_every_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            key: String::new(),
            checkpoint_file: None,
            checkpoint_every_secs: 300,
        }
    }
}

impl AuditConfig {
    /// Where and how often the services write checkpoints, if they do.
    pub fn checkpoints(&self) -> Option<Checkpoints> {
        Some(Checkpoints {
            file: self.checkpoint_file.clone()?,
            every: Duration::from_secs(self.checkpoint_every_secs.max(1)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Partitions of each topic `vigil migrate` creates; the scoring service runs one engine a
    /// partition, so this bounds how many instances share the work.
    pub partitions: i32,
    pub replication: i32,
    /// How long the topics keep messages, in hours (a restart without a snapshot replays them).
    pub retention_hours: u64,
    /// Compression of the topics' stored batches.
    pub compression: String,
    /// librdkafka properties every client sets, for a cluster that wants TLS or SASL:
    /// `security.protocol` (`SASL_SSL`, `SASL_PLAINTEXT`, `SSL`), `sasl.mechanism`,
    /// `sasl.username`, `sasl.password`, `ssl.ca.location`, ... An underscore in a name stands
    /// for a dot (librdkafka's names have none), so that the environment can set them:
    /// `VIGIL__KAFKA__CLIENT__SASL_PASSWORD`.
    pub client: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// The cluster as every client reaches it.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            brokers: self.brokers.clone(),
            properties: self
                .client
                .iter()
                .map(|(name, value)| (name.replace('_', "."), value.clone()))
                .collect(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            partitions: 8,
            replication: 1,
            retention_hours: 24 * 7,
            compression: "lz4".into(),
            client: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL; `vigil migrate` creates the database when it does not exist.
    pub url: String,
    pub max_connections: u32,
    /// The services' statements are cut off after this many seconds (Postgres's
    /// `statement_timeout`), so that one slow query cannot hold a connection, and the requests
    /// waiting for one, for good; 0: never.
    pub statement_timeout_secs: u32,
    /// A statement waiting this many seconds for a lock gives up (`lock_timeout`); 0: never.
    pub lock_timeout_secs: u32,
    /// For `vigil migrate`, run as the tables' owner: a login role it creates (or updates) as a
    /// member of `vigil_app`, which may read and write what the services need and only insert
    /// into the audit trail; the services then connect as it. Empty: none.
    pub app_user: String,
    /// That role's password (better in `VIGIL__POSTGRES__APP_PASSWORD`); empty: none (trust or
    /// certificate authentication).
    pub app_password: String,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/vigil".into(),
            max_connections: 8,
            statement_timeout_secs: 30,
            lock_timeout_secs: 10,
            app_user: String::new(),
            app_password: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix of every key and channel Vigil writes.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "vigil".into(),
        }
    }
}

impl Config {
    /// Loads the layers; `file` must exist when given.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_with(file, std::env::vars())
    }

    fn load_with(file: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> Result<Self> {
        let path = match file {
            Some(p) => Some(p.to_owned()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.exists()),
        };
        let mut table = toml::Table::new();
        if let Some(path) = &path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            // Parsed as the typed config first, so that an error names the file's line.
            toml::from_str::<Config>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            table =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        let mut overridden = vec![];
        for (name, value) in env.filter(|(k, _)| k.starts_with(ENV_PREFIX)) {
            set(&mut table, &name[ENV_PREFIX.len()..].to_lowercase(), &value)
                .with_context(|| format!("environment variable {name}"))?;
            overridden.push(name);
        }
        let config = Config::deserialize(table).map_err(|e| {
            anyhow::anyhow!(
                "{} (set by {})",
                e.message().trim_end(),
                if overridden.is_empty() {
                    "the defaults".into()
                } else {
                    overridden.join(", ")
                }
            )
        })?;
        config.engine.validate()?;
        Ok(config)
    }
}

/// Sets `a__b__c` in `table` to `value`, read as a TOML value where it is one (a number, a
/// boolean) and as a string otherwise.
fn set(table: &mut toml::Table, path: &str, value: &str) -> Result<()> {
    let keys: Vec<&str> = path.split("__").collect();
    let (last, parents) = keys.split_last().context("empty name")?;
    let mut at = table;
    for key in parents {
        let entry = at
            .entry((*key).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(next) = entry else {
            bail!("`{key}` is not a table")
        };
        at = next;
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    at.insert(
        (*last).to_owned(),
        parsed.unwrap_or_else(|| toml::Value::String(value.to_owned())),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn layers_apply_in_order() {
        let f = file("[engine]\nreview_threshold = 0.4\nmaturity = \"20d\"\n");
        let config = Config::load_with(
            Some(f.path()),
            env(&[("VIGIL__ENGINE__REVIEW_THRESHOLD", "0.6"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(config.engine.review_threshold, 0.6, "the environment wins");
        assert_eq!(
            config.engine.maturity.as_seconds(),
            20 * 86_400,
            "the file sets what the environment does not"
        );
        assert_eq!(
            config.engine.decline_threshold,
            EngineConfig::default().decline_threshold
        );
        let nested = Config::load_with(
            Some(f.path()),
            env(&[("VIGIL__ENGINE__MODEL__POSITIVE_WEIGHT", "4")]),
        )
        .unwrap();
        assert_eq!(nested.engine.model.positive_weight, 4.0);
    }

    #[test]
    fn the_environment_sets_the_kafka_clients_security() {
        let config = Config::load_with(
            None,
            env(&[
                ("VIGIL__KAFKA__CLIENT__SECURITY_PROTOCOL", "SASL_SSL"),
                ("VIGIL__KAFKA__CLIENT__SASL_PASSWORD", "secret"),
            ]),
        )
        .unwrap();
        let cluster = config.kafka.cluster();
        assert_eq!(cluster.properties["security.protocol"], "SASL_SSL");
        assert_eq!(cluster.properties["sasl.password"], "secret");
    }

    #[test]
    fn errors_name_the_line_or_the_variable() {
        let f = file("[engine]\nreview_threshold = 0.4\nreveiw = 1\n");
        let err = Config::load_with(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("unknown field `reveiw`"),
            "{err}"
        );
        let err = Config::load_with(None, env(&[("VIGIL__ENGINE__MATURITY", "soon")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("VIGIL__ENGINE__MATURITY"),
            "{err:#}"
        );
        let err = Config::load_with(None, env(&[("VIGIL__ENGINE__REVIEW_THRESHOLD", "0.99")]))
            .unwrap_err();
        assert!(err.to_string().contains("review_threshold"), "{err}");
    }
}
