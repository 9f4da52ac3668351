//! Rules as managed data (admin): drafts of one rule each (`/v1/rules`), tested on the
//! decisions of a period (`/v1/rules/{id}/test`), published as a new rule set version when a
//! second admin approves them (`/v1/rules/{id}/approve`), and the versions themselves
//! (`/v1/rule-sets`), any of which can be rolled back to. The scoring service decides with the
//! newest version within `scoring.rules_refresh_secs`, and records it with every decision.

// utoipa's expansion of `params(...)` names types by a full path.
#![allow(unused_qualifications)]

pub mod book;
pub mod history;

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Api;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
pub use book::{Draft, Proposal, RuleAction, RuleBody, RuleSetVersion};
pub use history::{Period, TestReport};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, change, remove))
        .routes(routes!(discard))
        .routes(routes!(test))
        .routes(routes!(approve))
        .routes(routes!(versions))
        .routes(routes!(version))
        .routes(routes!(roll_back))
}

/// A rule: as it is live, and as its draft would make it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleView {
    pub id: String,
    /// Absent for a rule only drafted.
    pub live: Option<RuleBody>,
    pub draft: Option<Draft>,
}

/// The live rules, in order, then the rules only drafted.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    /// The rule set version in force.
    pub version: i32,
    pub published_at: DateTime<Utc>,
    pub rules: Vec<RuleView>,
}

/// The live rules with their drafts, and the drafts of new rules.
pub async fn rule_list(api: &Api) -> Result<RuleList, ApiError> {
    let live = book::live(&mut *api.pool.acquire().await?).await?;
    let mut drafts = book::drafts(&api.pool).await?;
    let mut rules: Vec<RuleView> = live
        .rules
        .into_iter()
        .map(|rule| {
            let draft = drafts
                .iter()
                .position(|d| d.rule_id == rule.id)
                .map(|i| drafts.remove(i));
            RuleView {
                id: rule.id.clone(),
                live: Some(rule),
                draft,
            }
        })
        .collect();
    rules.extend(drafts.into_iter().map(|d| RuleView {
        id: d.rule_id.clone(),
        live: None,
        draft: Some(d),
    }));
    Ok(RuleList {
        version: live.version,
        published_at: live.published_at,
        rules,
    })
}

/// The rules in force and the drafts.
#[utoipa::path(get, path = "/v1/rules", tag = "rules",
    responses(
        (status = 200, description = "The live rules, then rules only drafted", body = RuleList),
        (status = 409, description = "No rule set is published yet", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list(State(api): State<Api>) -> Result<Json<RuleList>, ApiError> {
    Ok(Json(rule_list(&api).await?))
}

/// Drafts a new rule.
#[utoipa::path(post, path = "/v1/rules", tag = "rules", request_body = RuleBody,
    responses(
        (status = 201, description = "The draft, waiting for another admin's approval", body = Draft),
        (status = 409, description = "The rule exists already, or nothing is published yet", body = ErrorBody),
        (status = 422, description = "The rule cannot be used: the field, line and column", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Json(rule): Json<RuleBody>,
) -> Result<(StatusCode, Json<Draft>), ApiError> {
    let id = rule.id.clone();
    let draft = book::save_draft(
        &api.pool,
        &api.audit,
        &caller.actor(),
        &id,
        Proposal::New(&rule),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(draft)))
}

/// A rule, live and drafted.
#[utoipa::path(get, path = "/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "The rule's id")),
    responses(
        (status = 200, description = "The rule", body = RuleView),
        (status = 404, description = "No such rule, live or drafted", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn show(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<RuleView>, ApiError> {
    rule_list(&api)
        .await?
        .rules
        .into_iter()
        .find(|r| r.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no rule `{id}`, live or drafted")))
}

/// Drafts a change to a rule (or a new rule): it replaces the rule's draft, if any.
#[utoipa::path(put, path = "/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "The rule's id")),
    request_body = RuleBody,
    responses(
        (status = 200, description = "The draft", body = Draft),
        (status = 409, description = "Nothing is published yet", body = ErrorBody),
        (status = 422, description = "The rule cannot be used: the field, line and column", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn change(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    Json(rule): Json<RuleBody>,
) -> Result<Json<Draft>, ApiError> {
    book::save_draft(
        &api.pool,
        &api.audit,
        &caller.actor(),
        &id,
        Proposal::Change(&rule),
    )
    .await
    .map(Json)
}

/// Drafts the removal of a live rule.
#[utoipa::path(delete, path = "/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "The rule's id")),
    responses(
        (status = 200, description = "The draft that removes it", body = Draft),
        (status = 404, description = "No such live rule", body = ErrorBody),
        (status = 409, description = "Nothing is published yet", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn remove(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Json<Draft>, ApiError> {
    book::save_draft(
        &api.pool,
        &api.audit,
        &caller.actor(),
        &id,
        Proposal::Removal,
    )
    .await
    .map(Json)
}

/// Drops a rule's draft.
#[utoipa::path(delete, path = "/v1/rules/{id}/draft", tag = "rules",
    params(("id" = String, Path, description = "The rule's id")),
    responses(
        (status = 204, description = "Dropped"),
        (status = 404, description = "The rule has no draft", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn discard(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    book::discard_draft(&api.pool, &api.audit, &caller.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Tests a rule's draft (or, without one, the live rule) on the decisions of a period: hits
/// per day, precision on labelled hits, alerts added and removed against the live rule set,
/// the score shift, and a sample of the hits.
#[utoipa::path(post, path = "/v1/rules/{id}/test", tag = "rules",
    params(("id" = String, Path, description = "The rule's id")),
    request_body = Period,
    responses(
        (status = 200, description = "What it would have done", body = TestReport),
        (status = 404, description = "No such rule, live or drafted", body = ErrorBody),
        (status = 409, description = "Nothing is published yet", body = ErrorBody),
        (status = 422, description = "The draft cannot be used with the live rules", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn test(
    State(api): State<Api>,
    Path(id): Path<String>,
    Json(period): Json<Period>,
) -> Result<Json<TestReport>, ApiError> {
    history::test_rule(&api.pool, &api.engine, &id, &period)
        .await
        .map(Json)
}

/// What an approver read.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The draft's revision the approver read: refused (409) if it has changed since.
    pub revision: Option<i32>,
}

/// Approves a rule's draft: the live rule set with the draft applied is published as a new
/// version, in force within seconds. The draft's author may not approve it.
#[utoipa::path(post, path = "/v1/rules/{id}/approve", tag = "rules",
    params(("id" = String, Path, description = "The rule's id")),
    request_body = Approval,
    responses(
        (status = 201, description = "The version published", body = RuleSetVersion),
        (status = 403, description = "The draft's author may not approve it", body = ErrorBody),
        (status = 404, description = "The rule has no draft", body = ErrorBody),
        (status = 409, description = "The draft changed since the revision read", body = ErrorBody),
        (status = 422, description = "The draft cannot be used with the live rules", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn approve(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    Json(approval): Json<Approval>,
) -> Result<(StatusCode, Json<RuleSetVersion>), ApiError> {
    let published = book::approve(
        &api.pool,
        &api.audit,
        &caller.actor(),
        &id,
        approval.revision,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(published)))
}

/// A published version, without its rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: i32,
    pub author: String,
    pub approver: String,
    pub summary: String,
    pub published_at: DateTime<Utc>,
    /// How many rules it has.
    pub rules: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Versions {
    /// Newest (in force) first.
    pub versions: Vec<VersionSummary>,
}

/// The published rule set versions.
#[utoipa::path(get, path = "/v1/rule-sets", tag = "rules",
    responses((status = 200, description = "Newest first", body = Versions)),
    security(("api_key" = [])))]
pub async fn versions(State(api): State<Api>) -> Result<Json<Versions>, ApiError> {
    let versions = book::versions(&api.pool).await?;
    Ok(Json(Versions {
        versions: versions
            .into_iter()
            .map(|v| VersionSummary {
                version: v.version,
                author: v.author,
                approver: v.approver,
                summary: v.summary,
                published_at: v.published_at,
                rules: v.rules.len(),
            })
            .collect(),
    }))
}

/// A published rule set version, with its rules.
#[utoipa::path(get, path = "/v1/rule-sets/{version}", tag = "rules",
    params(("version" = i32, Path, description = "The version")),
    responses(
        (status = 200, description = "The version", body = RuleSetVersion),
        (status = 404, description = "No such version", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn version(
    State(api): State<Api>,
    Path(version): Path<i32>,
) -> Result<Json<RuleSetVersion>, ApiError> {
    book::version(&api.pool, version).await.map(Json)
}

/// Rolls back to an earlier version: its rules are published again as the newest version, in
/// force within seconds (restoring an approved set needs no second approval; it is audited).
#[utoipa::path(post, path = "/v1/rule-sets/{version}/rollback", tag = "rules",
    params(("version" = i32, Path, description = "The version to restore")),
    responses(
        (status = 201, description = "The version published", body = RuleSetVersion),
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 409, description = "That version is the one in force", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn roll_back(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(version): Path<i32>,
) -> Result<(StatusCode, Json<RuleSetVersion>), ApiError> {
    let published = book::roll_back(&api.pool, &api.audit, &caller.actor(), version).await?;
    Ok((StatusCode::CREATED, Json(published)))
}
