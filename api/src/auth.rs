//! API keys, roles and per-key rate limits.
//!
//! A key is `vgl_` and 64 hex digits (256 random bits). Postgres keeps only its SHA-256, which
//! is enough for a secret of that strength (a slow password hash protects weak secrets). Lookups
//! are cached for a few seconds, so a revoked key stops working within `CACHE_TTL` (an expired
//! one at once); while Postgres is down, keys seen lately keep working.
//! `Authorization: Bearer <key>` on every request but the API docs; no key or an unknown,
//! revoked or expired one gets 401, a role that may not call the route 403, and a key over its
//! rate 429.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::error::ApiError;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Post transactions and labels.
    Ingest,
    /// Read and work alerts.
    Investigator,
    /// Everything, with keys and lists.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Ingest, Role::Investigator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Investigator => "investigator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The caller of a request: the key it authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: i64,
    pub name: String,
    pub role: Role,
    rate_per_sec: u32,
    /// When the key stops working, if it does: checked on every request, cached or not.
    expires_at: Option<DateTime<Utc>>,
}

impl Principal {
    /// How the audit trail names this caller.
    pub fn actor(&self) -> String {
        format!("key {} ({})", self.key_id, self.name)
    }

    fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Utc::now())
    }
}

/// A new key's secret, shown once, with what Postgres keeps of it.
#[derive(Debug)]
pub struct NewSecret {
    pub secret: String,
    /// The first characters, to tell keys apart in listings.
    pub prefix: String,
    pub hash: [u8; 32],
}

pub const KEY_PREFIX: &str = "vgl_";

pub fn new_secret() -> NewSecret {
    let secret = format!("{KEY_PREFIX}{}", random_hex());
    NewSecret {
        prefix: secret[..KEY_PREFIX.len() + 8].to_owned(),
        hash: hash(&secret),
        secret,
    }
}

/// 256 random bits as 64 hex digits.
pub fn random_hex() -> String {
    let mut random = [0_u8; 32];
    getrandom::fill(&mut random).expect("the OS has a source of randomness");
    let mut hex = String::with_capacity(64);
    for b in random {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// How long a key lookup is trusted before Postgres is asked again.
const CACHE_TTL: Duration = Duration::from_secs(5);

/// How long a key found before still works while Postgres cannot be asked: long enough to ride
/// out a restart of the database, short enough that a revoked key does not live on.
const MAX_STALE: Duration = Duration::from_mins(5);

/// Unknown keys remembered (so that guessing does not reach Postgres); beyond this many, they
/// are forgotten, never the keys found.
const MAX_UNKNOWN: usize = 10_000;

/// Lookups that find no key a client address may make: a burst, then a few a second.
const LOOKUPS_PER_SEC: u32 = 5;
const LOOKUP_BURST: u32 = 20;

/// Addresses whose lookups are tracked before those back at a full burst are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// A key as `api_keys` holds it: id, name, role, rate, expiry.
type KeyRow = (i64, String, String, Option<i32>, Option<DateTime<Utc>>);

/// A session's key as [`KeyRow`], with the session's CSRF token.
type SessionRow = (
    i64,
    String,
    String,
    Option<i32>,
    Option<DateTime<Utc>>,
    String,
);

/// A live key's caller, and when the key was looked up.
type Found = (Arc<Principal>, Instant);

/// Authenticates keys and keeps their rate limits.
#[derive(Debug)]
pub struct Keys {
    pool: PgPool,
    default_rate_per_sec: u32,
    /// Live keys found, by hash, with when they were looked up.
    known: Mutex<HashMap<[u8; 32], Found>>,
    /// Hashes of keys found to be no live key, with when.
    unknown: Mutex<HashMap<[u8; 32], Instant>>,
    /// Lookups in Postgres that found no key, by client address.
    lookups: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses over that limit, until when they are refused lookups.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    limiters: Mutex<HashMap<i64, Limiter>>,
}

/// A key's rate limit: `rate` requests a second, with a burst of twice that, the rate it was made
/// for kept so that a changed rate starts a new one.
#[derive(Debug)]
struct Limiter {
    rate_per_sec: u32,
    limiter: DefaultDirectRateLimiter,
}

impl Limiter {
    fn new(rate_per_sec: u32) -> Self {
        let rate = NonZeroU32::new(rate_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not 0"));
        Self {
            rate_per_sec,
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        }
    }
}

impl Keys {
    pub fn new(pool: PgPool, default_rate_per_sec: u32) -> Self {
        Self {
            pool,
            default_rate_per_sec,
            known: Mutex::default(),
            unknown: Mutex::default(),
            lookups: RateLimiter::keyed(
                Quota::per_second(NonZeroU32::new(LOOKUPS_PER_SEC).expect("not 0"))
                    .allow_burst(NonZeroU32::new(LOOKUP_BURST).expect("not 0")),
            ),
            blocked: Mutex::default(),
            limiters: Mutex::default(),
        }
    }

    /// The caller of a request with these headers, from `client` (when the server knows it).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, ApiError> {
        let secret = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        self.authenticate_secret(secret, client).await
    }

    /// The caller holding the key `secret` (sent by `client`, when the server knows it).
    pub async fn authenticate_secret(
        &self,
        secret: &str,
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, ApiError> {
        let secret = secret.trim();
        if !secret.starts_with(KEY_PREFIX) {
            return Err(ApiError::Unauthorized);
        }
        let hash = hash(secret);
        let known = self.locked_known().get(&hash).cloned();
        if let Some((principal, _)) = &known
            && principal.expired()
        {
            return Err(failed(client));
        }
        if let Some((principal, at)) = &known
            && at.elapsed() < CACHE_TTL
        {
            return Ok(principal.clone());
        }
        let unknown_at = self
            .unknown
            .lock()
            .expect("no panic while locked")
            .get(&hash)
            .copied();
        if known.is_none() && unknown_at.is_some_and(|at| at.elapsed() < CACHE_TTL) {
            return Err(failed(client));
        }
        // An address whose lookups found nothing too often is refused new lookups for a while;
        // a key found before is looked up again whatever its neighbours on the address do.
        if known.is_none()
            && let Some(client) = client
            && let Some(wait) = self.blocked_for(client)
        {
            return Err(ApiError::RateLimited(
                wait.as_secs_f64().ceil().max(1.0) as u64
            ));
        }
        let found = match self.lookup(&hash).await {
            Ok(found) => found.map(Arc::new),
            // Postgres down: a key found lately still works (the intake keeps taking payments);
            // an unknown one, or one found long ago, cannot be checked.
            Err(e) => match known {
                Some((principal, at)) if at.elapsed() < MAX_STALE => return Ok(principal),
                _ => return Err(e),
            },
        };
        match found {
            Some(principal) => {
                self.locked_known()
                    .insert(hash, (principal.clone(), Instant::now()));
                Ok(principal)
            }
            None => {
                self.locked_known().remove(&hash);
                let mut unknown = self.unknown.lock().expect("no panic while locked");
                if unknown.len() >= MAX_UNKNOWN {
                    unknown.clear();
                }
                unknown.insert(hash, Instant::now());
                if let Some(client) = client {
                    self.charge_miss(client);
                }
                Err(failed(client))
            }
        }
    }

    /// How long `client` is still refused lookups, if it is.
    fn blocked_for(&self, client: IpAddr) -> Option<Duration> {
        let blocked = self.blocked.lock().expect("no panic while locked");
        let until = blocked.get(&client)?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a lookup that found nothing against `client`: only misses count, so that many
    /// clients starting at once with one new key are not refused.
    fn charge_miss(&self, client: IpAddr) {
        if self.lookups.len() > MAX_TRACKED_ADDRESSES {
            self.lookups.retain_recent();
        }
        let Err(not_until) = self.lookups.check_key(&client) else {
            return;
        };
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        tracing::warn!(%client, "authentication lookups over this address's limit");
        let mut blocked = self.blocked.lock().expect("no panic while locked");
        if blocked.len() >= MAX_TRACKED_ADDRESSES {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(client, Instant::now() + wait);
    }

    fn locked_known(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Found>> {
        self.known.lock().expect("no panic while locked")
    }

    /// Whether key `key_id` is still live (neither revoked nor expired); `None` when Postgres
    /// cannot say.
    pub async fn is_live(&self, key_id: i64) -> Option<bool> {
        sqlx::query_scalar(
            "SELECT revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
             FROM api_keys WHERE id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
        .ok()
        .map(|live| live.unwrap_or(false))
    }

    async fn lookup(&self, hash: &[u8; 32]) -> Result<Option<Principal>, ApiError> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT id, name, role, rate_per_sec, expires_at FROM api_keys
             WHERE hash = $1 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(hash.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|row| self.principal(row)))
    }

    fn principal(&self, row: KeyRow) -> Option<Principal> {
        let (key_id, name, role, rate, expires_at) = row;
        Some(Principal {
            key_id,
            name,
            role: Role::parse(&role)?,
            rate_per_sec: rate.map_or(self.default_rate_per_sec, |r| r.max(1) as u32),
            expires_at,
        })
    }

    /// The caller of the console session whose token hashes to `token_hash`, with the token its
    /// forms carry, while both the session and its key are live.
    pub async fn by_session(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<(Arc<Principal>, String)>, ApiError> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT k.id, k.name, k.role, k.rate_per_sec, k.expires_at, s.csrf
                 FROM console_sessions s JOIN api_keys k ON k.id = s.key_id
                 WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL
                   AND (k.expires_at IS NULL OR k.expires_at > now())",
        )
        .bind(token_hash.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(id, name, role, rate, expires_at, csrf)| {
            let principal = self.principal((id, name, role, rate, expires_at))?;
            Some((Arc::new(principal), csrf))
        }))
    }

    /// Takes one request from the caller's allowance, or says how long to wait.
    pub fn check_rate(&self, principal: &Principal) -> Result<(), ApiError> {
        let mut limiters = self.limiters.lock().expect("no panic while locked");
        let limiter = limiters
            .entry(principal.key_id)
            .and_modify(|l| {
                if l.rate_per_sec != principal.rate_per_sec {
                    *l = Limiter::new(principal.rate_per_sec);
                }
            })
            .or_insert_with(|| Limiter::new(principal.rate_per_sec));
        limiter.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }
}

/// A key that is no live key: logged with where it came from, answered 401.
fn failed(client: Option<IpAddr>) -> ApiError {
    match client {
        Some(client) => tracing::warn!(%client, "authentication failed: no live key"),
        None => tracing::warn!("authentication failed: no live key"),
    }
    ApiError::Unauthorized
}

/// Who may pass: the keys, and the roles a group of routes allows.
#[derive(Debug, Clone)]
pub struct Guard {
    pub keys: Arc<Keys>,
    pub allowed: &'static [Role],
}

pub const INGEST: &[Role] = &[Role::Ingest, Role::Admin];
pub const INVESTIGATE: &[Role] = &[Role::Investigator, Role::Admin];
pub const ADMIN: &[Role] = &[Role::Admin];
pub const ANY: &[Role] = &Role::ALL;

/// Middleware: authenticates the caller, checks its rate and role, and hands the
/// [`Principal`] to the handler as an extension.
pub async fn require(
    State(guard): State<Guard>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let principal = guard.keys.authenticate(request.headers(), client).await?;
    guard.keys.check_rate(&principal)?;
    if !guard.allowed.contains(&principal.role) {
        return Err(ApiError::Forbidden(principal.role.as_str()));
    }
    request
        .extensions_mut()
        .insert(vigil_common::http::SentBy(principal.actor()));
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}
