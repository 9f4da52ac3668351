//! API keys: the list, a new key (its secret shown on this one answer only), revoking.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use crate::auth::{ADMIN, Role};
use crate::console::form::Fields;
use crate::console::page::{self, ConsoleError};
use crate::console::session::Signed;
use crate::extract::{Json, Path};
use crate::keys::{self, CreatedKey, NewKey};
use crate::{Api, ApiError};

pub async fn page(State(api): State<Api>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(ADMIN)?;
    render(&api, &signed, None).await
}

async fn render(
    api: &Api,
    signed: &Signed,
    created: Option<&CreatedKey>,
) -> Result<Response, ConsoleError> {
    let keys = keys::all(&api.pool).await?;
    let body = html! {
        h1 { "API keys" }
        @if let Some(created) = created {
            section.created role="status" {
                p { "Key " strong { (created.key.name) } " (" (created.key.role.as_str()) ") made. Copy it now: it is shown this once and never stored." }
                p { code #secret { (created.secret) } }
            }
        }
        (new_key_form(signed))
        table {
            tr { th { "Id" } th { "Name" } th { "Role" } th { "Starts" } th { "Made" } th { "Expires" } th { "Revoked" } th {} }
            @for key in &keys {
                tr {
                    td { (key.id) } td { (key.name) } td { (key.role.as_str()) } td { code { (key.prefix) "…" } }
                    td { (page::time(key.created_at)) }
                    td { (key.expires_at.map(page::time).unwrap_or_default()) }
                    td { (key.revoked_at.map(page::time).unwrap_or_default()) }
                    td {
                        @if key.revoked_at.is_none() {
                            form method="post" action={"/console/admin/keys/" (key.id) "/revoke"} {
                                input type="hidden" name="csrf" value=(signed.csrf);
                                button type="submit" { "Revoke" }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page::shell("Keys", Some(signed), &body).into_response())
}

fn new_key_form(signed: &Signed) -> Markup {
    html! {
        form.filters method="post" action="/console/admin/keys" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label { "Name" input type="text" name="name" required; }
            label { "Role"
                select name="role" {
                    @for role in Role::ALL { option value=(role.as_str()) { (role.as_str()) } }
                }
            }
            label { "Requests a second" input type="number" name="rate_per_sec" min="1"; }
            label { "Days it works" input type="number" name="expires_in_days" min="1" max="3650"; }
            button type="submit" { "Make a key" }
        }
    }
}

pub async fn create(
    State(api): State<Api>,
    signed: Signed,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(ADMIN, &form)?;
    let new = NewKey {
        name: form.get("name").unwrap_or_default().to_owned(),
        role: form
            .parsed("role", |r| Role::parse(r).ok_or("no such role"))?
            .ok_or_else(|| ApiError::BadRequest("role: choose one".into()))?,
        rate_per_sec: form.parsed("rate_per_sec", str::parse)?,
        expires_in_days: form.parsed("expires_in_days", str::parse)?,
    };
    let (_, Json(created)) = keys::create(
        State(api.clone()),
        Extension(signed.principal.clone()),
        Json(new),
    )
    .await?;
    let mut response = render(&api, &signed, Some(&created)).await?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

pub async fn revoke(
    State(api): State<Api>,
    signed: Signed,
    axum::extract::Path(id): axum::extract::Path<i64>,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(ADMIN, &form)?;
    keys::revoke(State(api), Extension(signed.principal.clone()), Path(id)).await?;
    Ok(Redirect::to("/console/admin/keys").into_response())
}
