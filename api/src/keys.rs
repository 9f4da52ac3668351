//! API keys (admin): `GET /v1/keys`, `POST /v1/keys`, `DELETE /v1/keys/{id}`, and the same
//! operations for `vigil keys`. A new key's secret is shown once, in the answer that creates
//! it; Postgres keeps its hash. Creating and revoking are audited.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Api;
use crate::audit::{Change, Trail};
use crate::auth::{self, Principal, Role};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    /// Requests per second; the configured default when absent.
    pub rate_per_sec: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the key stops working, if it ever does.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyInfo,
    /// The key itself: shown this once, never stored.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Who or what uses the key: it names the caller in the audit trail and is an
    /// investigator's name when they claim alerts.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$"
    )]
    pub name: String,
    pub role: Role,
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    #[serde(default, deserialize_with = "crate::extract::optional_whole_number")]
    pub rate_per_sec: Option<u32>,
    /// Days the key works for; for good when absent (rotate keys with a lifetime: a key that
    /// leaks then stops working on its own).
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::extract::optional_whole_number")]
    pub expires_in_days: Option<u32>,
}

/// The longest lifetime a key may be given, in days (ten years).
const MAX_LIFETIME_DAYS: u32 = 3650;

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: i64,
    name: String,
    role: String,
    prefix: String,
    rate_per_sec: Option<i32>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

macro_rules! key_columns {
    () => {
        "id, name, role, prefix, rate_per_sec, created_at, revoked_at, expires_at"
    };
}

fn key_info(row: KeyRow) -> Result<KeyInfo, ApiError> {
    Ok(KeyInfo {
        id: row.id,
        name: row.name,
        role: Role::parse(&row.role)
            .ok_or_else(|| ApiError::unavailable("postgres", &"a key of an unknown role"))?,
        prefix: row.prefix,
        rate_per_sec: row.rate_per_sec,
        created_at: row.created_at,
        revoked_at: row.revoked_at,
        expires_at: row.expires_at,
    })
}

/// Every key, newest first.
pub async fn all(pool: &PgPool) -> Result<Vec<KeyInfo>, ApiError> {
    let rows: Vec<KeyRow> = sqlx::query_as(concat!(
        "SELECT ",
        key_columns!(),
        " FROM api_keys ORDER BY id DESC"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(key_info).collect()
}

/// Creates a key for `new`, audited as done by `actor`.
pub async fn create_key(
    pool: &PgPool,
    trail: &Trail,
    actor: &str,
    new: &NewKey,
) -> Result<CreatedKey, ApiError> {
    ApiError::check_id("name", &new.name)?;
    let rate = new
        .rate_per_sec
        .map(|r| i32::try_from(r).ok().filter(|&r| r >= 1))
        .map(|r| r.ok_or_else(|| ApiError::BadRequest("rate_per_sec must be at least 1".into())))
        .transpose()?;
    let days = new
        .expires_in_days
        .map(|days| {
            (1..=MAX_LIFETIME_DAYS)
                .contains(&days)
                .then_some(days)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "expires_in_days must be between 1 and {MAX_LIFETIME_DAYS}"
                    ))
                })
        })
        .transpose()?;
    let secret = auth::new_secret();
    let mut tx = pool.begin().await?;
    let row: KeyRow = sqlx::query_as(concat!(
        "INSERT INTO api_keys (name, role, prefix, hash, rate_per_sec, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(days => $6)) RETURNING ",
        key_columns!()
    ))
    .bind(&new.name)
    .bind(new.role.as_str())
    .bind(&secret.prefix)
    .bind(secret.hash.as_slice())
    .bind(rate)
    .bind(days.map(|d| d as i32))
    .fetch_one(&mut *tx)
    .await?;
    let key = key_info(row)?;
    trail
        .append(
            &mut tx,
            Change {
                actor,
                action: "key.create",
                target: &format!("key {}", key.id),
                before: None,
                after: Some(serde_json::to_value(&key).expect("a key serializes")),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(CreatedKey {
        key,
        secret: secret.secret,
    })
}

/// Revokes key `id`, audited as done by `actor`; revoking a revoked key changes nothing.
pub async fn revoke_key(
    pool: &PgPool,
    trail: &Trail,
    actor: &str,
    id: i64,
) -> Result<KeyInfo, ApiError> {
    let mut tx = pool.begin().await?;
    let before: Option<KeyRow> = sqlx::query_as(concat!(
        "SELECT ",
        key_columns!(),
        " FROM api_keys WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let before = key_info(before.ok_or_else(|| ApiError::NotFound(format!("no key {id}")))?)?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    let row: KeyRow = sqlx::query_as(concat!(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 RETURNING ",
        key_columns!()
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let after = key_info(row)?;
    let json = |k: &KeyInfo| serde_json::to_value(k).expect("a key serializes");
    trail
        .append(
            &mut tx,
            Change {
                actor,
                action: "key.revoke",
                target: &format!("key {id}"),
                before: Some(json(&before)),
                after: Some(json(&after)),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(after)
}

/// The API keys (hashes are never shown).
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, description = "The keys", body = KeyList)),
    security(("api_key" = [])))]
pub async fn list(State(api): State<Api>) -> Result<Json<KeyList>, ApiError> {
    Ok(Json(KeyList {
        keys: all(&api.pool).await?,
    }))
}

/// Creates a key; its secret is in this answer only.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses(
        (status = 201, description = "The key, with its secret", body = CreatedKey),
        (status = 400, description = "A bad name, rate or lifetime", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Json(new): Json<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let created = create_key(&api.pool, &api.audit, &caller.actor(), &new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes a key: it stops working within seconds (lookups are cached for 5 s).
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = i64, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The revoked key", body = KeyInfo),
        (status = 404, description = "No such key", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn revoke(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(id): Path<i64>,
) -> Result<Json<KeyInfo>, ApiError> {
    Ok(Json(
        revoke_key(&api.pool, &api.audit, &caller.actor(), id).await?,
    ))
}
