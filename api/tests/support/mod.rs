//! What the API's in-process tests share: the API on a database of its own per test (the
//! local Postgres, migrated) and the local Redis, with a key of each role, called with
//! `tower::ServiceExt::oneshot`.
#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt as _;
use vigil_api::audit::Trail;
use vigil_api::keys::{NewKey, create_key};
use vigil_api::{Api, ApiConfig, ApiParts, Keys, Role, router};
use vigil_common::kafka::ProducerConfig;
use vigil_schema::pan::PanTokenizer;

pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";
/// The address requests come from, unless a test says otherwise.
pub const CLIENT: [u8; 4] = [192, 0, 2, 1];
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The API's key for card-number tokens in these tests.
pub const ROUTER_PAN_KEY: &[u8] = b"the router tests' key, not a secret";

/// The audit trail as the API under test keys it.
pub fn trail() -> Trail {
    Trail::new(b"the router tests' audit key, not a secret")
}

/// The API on a database of its own, with a key of each role.
pub struct TestApi {
    pub app: Router,
    pub pool: PgPool,
    pub keys: Vec<(Role, String)>,
}

/// An answer: its status, headers and JSON body (`Null` when it has none).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

impl TestApi {
    pub async fn new(config: ApiConfig) -> Self {
        let name = unique("vigil_api_test");
        let admin = PgPool::connect(&format!("{SERVER}/postgres"))
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await
            .unwrap();
        let pool = PgPool::connect(&format!("{SERVER}/{name}")).await.unwrap();
        let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/migrations");
        sqlx::migrate::Migrator::new(std::path::Path::new(migrations))
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        let api = Api::new(ApiParts {
            pool: pool.clone(),
            card_reads: pool.clone(),
            keys: Arc::new(Keys::new(pool.clone(), config.default_rate_per_sec)),
            redis_url: REDIS_URL,
            redis_prefix: &name,
            // No broker: only closing an alert produces, through the outbox, later.
            kafka: &vigil_common::kafka::Cluster::at("127.0.0.1:9"),
            producer: &ProducerConfig::default(),
            tokenizer: PanTokenizer::new(ROUTER_PAN_KEY),
            audit: trail(),
            config,
            engine: vigil_engine::EngineConfig::default(),
            registry: &prometheus::Registry::new(),
        })
        .unwrap();
        let mut keys = vec![];
        for role in Role::ALL {
            keys.push((role, new_key(&pool, role, None).await));
        }
        Self {
            app: router(api),
            pool,
            keys,
        }
    }

    pub async fn call(&self, method: &Method, path: &str, key: Option<&str>, body: Body) -> Answer {
        self.call_from(CLIENT, method, path, key, body).await
    }

    /// [`TestApi::call`] from the client at `from`, as the server's connection info gives it.
    pub async fn call_from(
        &self,
        from: [u8; 4],
        method: &Method,
        path: &str,
        key: Option<&str>,
        body: Body,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .extension(ConnectInfo(SocketAddr::from((from, 40_000))));
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        // A stream (the live feed) is answered by its headers; its body never ends.
        let streamed = parts.headers.get(header::CONTENT_TYPE);
        let body = if streamed.is_some_and(|t| t == "text/event-stream") {
            Value::Null
        } else {
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn send(
        &self,
        method: &Method,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> Answer {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.call(method, path, Some(key), body).await
    }

    pub fn key(&self, role: Role) -> &str {
        &self.keys.iter().find(|(r, _)| *r == role).unwrap().1
    }
}

pub async fn new_key(pool: &PgPool, role: Role, rate_per_sec: Option<u32>) -> String {
    let new = NewKey {
        name: role.as_str().to_owned(),
        role,
        rate_per_sec,
        expires_in_days: None,
    };
    create_key(pool, &trail(), "router tests", &new)
        .await
        .unwrap()
        .secret
}

pub fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}_{}_{nanos}", std::process::id())
}

/// Publishes Vigil's default rules as rule set version 1, as the scorer does when it first
/// starts.
pub async fn seed_rules(pool: &PgPool) {
    sqlx::query(
        "INSERT INTO rule_set_versions (version, rules, author, approver, summary)
         VALUES (1, $1, 'scoring service', 'scoring service', 'seeded')",
    )
    .bind(sqlx::types::Json(
        vigil_engine::RuleSet::default_rules().specs(),
    ))
    .execute(pool)
    .await
    .unwrap();
}
