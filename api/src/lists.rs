//! Allow and block lists (admin): `GET /v1/lists`, `POST /v1/lists`, `PATCH /v1/lists/{id}`,
//! `DELETE /v1/lists/{id}`. The scoring service reloads the live entries every few seconds
//! (`scoring.lists_refresh_secs`): a blocked card, merchant, device or country is declined, an
//! allowed one is not alerted. An entry may expire; every change is audited.

// utoipa's expansion of `params(ListQuery)` names the type by a full path.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_schema::{Country, DeviceId, ListKind, ListName, MerchantId};

use crate::Api;
use crate::audit::Change;
use crate::auth::Principal;
use crate::cards::card_token;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update, delete))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ListEntry {
    pub id: i64,
    pub list: ListName,
    pub kind: ListKind,
    /// The card's token, merchant id, device id or country code.
    pub value: String,
    pub reason: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

type EntryRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    String,
    DateTime<Utc>,
);

macro_rules! entry_columns {
    () => {
        "id, list, kind, value, reason, expires_at, created_by, created_at"
    };
}

fn entry(row: EntryRow) -> Result<ListEntry, ApiError> {
    let (id, list, kind, value, reason, expires_at, created_by, created_at) = row;
    let unknown = || ApiError::unavailable("postgres", &"a list entry of an unknown list or kind");
    Ok(ListEntry {
        id,
        list: ListName::parse(&list).ok_or_else(unknown)?,
        kind: ListKind::parse(&kind).ok_or_else(unknown)?,
        value,
        reason,
        expires_at,
        created_by,
        created_at,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(inline)]
    pub list: Option<ListName>,
    #[param(inline)]
    pub kind: Option<ListKind>,
    /// Include entries that have expired.
    #[serde(default)]
    pub include_expired: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Entries {
    pub entries: Vec<ListEntry>,
}

/// The list entries, newest first.
#[utoipa::path(get, path = "/v1/lists", tag = "lists", params(ListQuery),
    responses(
        (status = 200, description = "The entries", body = Entries),
        (status = 400, description = "A bad filter", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list(
    State(api): State<Api>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Entries>, ApiError> {
    let rows: Vec<EntryRow> = sqlx::query_as(concat!(
        "SELECT ",
        entry_columns!(),
        " FROM list_entries
         WHERE ($1::text IS NULL OR list = $1) AND ($2::text IS NULL OR kind = $2)
             AND ($3 OR expires_at IS NULL OR expires_at > now())
         ORDER BY id DESC"
    ))
    .bind(q.list.map(ListName::as_str))
    .bind(q.kind.map(ListKind::as_str))
    .bind(q.include_expired)
    .fetch_all(&api.pool)
    .await?;
    Ok(Json(Entries {
        entries: rows.into_iter().map(entry).collect::<Result<_, _>>()?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub list: ListName,
    pub kind: ListKind,
    /// A card token or number (a number is tokenized), a merchant id, a device id, or an
    /// ISO 3166 alpha-2 country code.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$"
    )]
    pub value: String,
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
    /// When the entry stops applying; never when absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Adds an entry.
#[utoipa::path(post, path = "/v1/lists", tag = "lists", request_body = NewEntry,
    responses(
        (status = 201, description = "The entry", body = ListEntry),
        (status = 400, description = "A bad entry", body = ErrorBody),
        (status = 409, description = "The value is on that list already", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Json(new): Json<NewEntry>,
) -> Result<(StatusCode, Json<ListEntry>), ApiError> {
    let value = normalize(&api, new.kind, &new.value)?;
    let reason = checked_reason(new.reason.as_deref())?;
    let mut tx = api.pool.begin().await?;
    let row: Option<EntryRow> = sqlx::query_as(concat!(
        "INSERT INTO list_entries (list, kind, value, reason, expires_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (list, kind, value) DO NOTHING
         RETURNING ",
        entry_columns!()
    ))
    .bind(new.list.as_str())
    .bind(new.kind.as_str())
    .bind(&value)
    .bind(&reason)
    .bind(new.expires_at)
    .bind(caller.actor())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(ApiError::Conflict(
            "that value is on that list already: change its entry instead".into(),
        ));
    };
    let created = entry(row)?;
    api.audit
        .append(
            &mut tx,
            Change {
                actor: &caller.actor(),
                action: "list.create",
                target: &format!("list entry {}", created.id),
                before: None,
                after: Some(to_json(&created)),
            },
        )
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryChange {
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
    /// A new expiry; to remove an entry, delete it.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Changes an entry's reason or expiry.
#[utoipa::path(patch, path = "/v1/lists/{id}", tag = "lists",
    params(("id" = i64, Path, description = "The entry's id")),
    request_body = EntryChange,
    responses(
        (status = 200, description = "The entry after the change", body = ListEntry),
        (status = 400, description = "A bad change", body = ErrorBody),
        (status = 404, description = "No such entry", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn update(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(id): Path<i64>,
    Json(change): Json<EntryChange>,
) -> Result<Json<ListEntry>, ApiError> {
    let reason = checked_reason(change.reason.as_deref())?;
    let mut tx = api.pool.begin().await?;
    let before = fetch_for_update(&mut tx, id).await?;
    let row: EntryRow = sqlx::query_as(concat!(
        "UPDATE list_entries SET reason = COALESCE($2, reason),
             expires_at = COALESCE($3, expires_at)
         WHERE id = $1 RETURNING ",
        entry_columns!()
    ))
    .bind(id)
    .bind(&reason)
    .bind(change.expires_at)
    .fetch_one(&mut *tx)
    .await?;
    let after = entry(row)?;
    api.audit
        .append(
            &mut tx,
            Change {
                actor: &caller.actor(),
                action: "list.update",
                target: &format!("list entry {id}"),
                before: Some(to_json(&before)),
                after: Some(to_json(&after)),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Removes an entry.
#[utoipa::path(delete, path = "/v1/lists/{id}", tag = "lists",
    params(("id" = i64, Path, description = "The entry's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such entry", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn delete(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = api.pool.begin().await?;
    let before = fetch_for_update(&mut tx, id).await?;
    sqlx::query("DELETE FROM list_entries WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    api.audit
        .append(
            &mut tx,
            Change {
                actor: &caller.actor(),
                action: "list.delete",
                target: &format!("list entry {id}"),
                before: Some(to_json(&before)),
                after: None,
            },
        )
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn fetch_for_update(tx: &mut sqlx::PgConnection, id: i64) -> Result<ListEntry, ApiError> {
    let row: Option<EntryRow> = sqlx::query_as(concat!(
        "SELECT ",
        entry_columns!(),
        " FROM list_entries WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    entry(row.ok_or_else(|| ApiError::NotFound(format!("no list entry {id}")))?)
}

/// The value as the scoring service compares it, checked as the v1 contract checks it.
fn normalize(api: &Api, kind: ListKind, value: &str) -> Result<String, ApiError> {
    let bad = |e: vigil_schema::Error| ApiError::BadRequest(format!("value: {}", e.message()));
    match kind {
        ListKind::Card => card_token(api, value),
        ListKind::Merchant => MerchantId::parse(value)
            .map(|_| value.to_owned())
            .map_err(bad),
        ListKind::Device => DeviceId::parse(value)
            .map(|_| value.to_owned())
            .map_err(bad),
        ListKind::Country => serde_json::from_value::<Country>(serde_json::Value::from(value))
            .map(|c| c.as_str().to_owned())
            .map_err(|e| ApiError::BadRequest(format!("value: {e}"))),
    }
}

/// The reason as stored (and audited): at most 1,000 characters, any card number in it masked.
fn checked_reason(reason: Option<&str>) -> Result<Option<String>, ApiError> {
    match reason {
        Some(r) if r.chars().count() > 1000 => Err(ApiError::BadRequest(
            "reason must be at most 1000 characters".into(),
        )),
        reason => Ok(reason.map(|r| vigil_schema::pan::redact(r).into_owned())),
    }
}

fn to_json(entry: &ListEntry) -> serde_json::Value {
    serde_json::to_value(entry).expect("a list entry serializes")
}
