//! The audit trail: its newest records, and checking the whole chain (as `vigil audit verify`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::audit::Verdict;
use crate::auth::ADMIN;
use crate::console::form::Fields;
use crate::console::page::{self, ConsoleError};
use crate::console::session::Signed;
use crate::{Api, ApiError};

/// Records shown, newest first.
const NEWEST: i64 = 200;

#[derive(sqlx::FromRow)]
struct Record {
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    target: String,
    after: Option<String>,
}

pub async fn page(State(api): State<Api>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(ADMIN)?;
    render(&api, &signed, None).await
}

pub async fn verify(
    State(api): State<Api>,
    signed: Signed,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(ADMIN, &form)?;
    let verdict = api
        .audit
        .verify(&api.pool, &[])
        .await
        .map_err(ApiError::from)?;
    let shown = match verdict {
        Verdict::Intact { records, .. } => html! {
            p #verdict.intact role="status" { "Intact: all " (records) " records hold, each chained to the one before." }
        },
        Verdict::Broken { seq, reason } => html! {
            p #verdict.problem role="alert" { "Broken at record " (seq) ": " (reason) }
        },
    };
    render(&api, &signed, Some(shown)).await
}

async fn render(
    api: &Api,
    signed: &Signed,
    verdict: Option<Markup>,
) -> Result<Response, ConsoleError> {
    let records: Vec<Record> = sqlx::query_as(
        "SELECT seq, at, actor, action, target, after FROM audit_log ORDER BY seq DESC LIMIT $1",
    )
    .bind(NEWEST)
    .fetch_all(&api.pool)
    .await
    .map_err(ApiError::from)?;
    let body = html! {
        h1 { "Audit trail" }
        form method="post" action="/console/admin/audit" {
            input type="hidden" name="csrf" value=(signed.csrf);
            button type="submit" { "Verify the chain" }
        }
        @if let Some(verdict) = verdict { (verdict) }
        table {
            tr { th { "#" } th { "When" } th { "Who" } th { "What" } th { "On" } th { "After" } }
            @for r in &records {
                tr { td { (r.seq) } td { (page::time(r.at)) } td { (r.actor) } td { (r.action) } td { (r.target) }
                     td { code { (r.after.as_deref().unwrap_or("")) } } }
            }
        }
    };
    Ok(page::shell("Audit", Some(signed), &body).into_response())
}
