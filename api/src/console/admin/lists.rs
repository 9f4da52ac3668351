//! Allow and block lists: the live entries (and, on demand, the expired), adding one, expiring
//! one now, removing one.

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::html;
use vigil_schema::{ListKind, ListName};

use crate::auth::ADMIN;
use crate::console::form::Fields;
use crate::console::form::moment;
use crate::console::page::card_shown;
use crate::console::page::{self, ConsoleError};
use crate::console::session::Signed;
use crate::extract::{Json, Path, Query};
use crate::lists::{self, EntryChange, ListQuery, NewEntry};
use crate::{Api, ApiError};

pub async fn page(
    State(api): State<Api>,
    signed: Signed,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    signed.require(ADMIN)?;
    let include_expired = Fields::parse(query.unwrap_or_default().as_bytes())
        .get("expired")
        .is_some();
    let Json(entries) = lists::list(
        State(api),
        Query(ListQuery {
            list: None,
            kind: None,
            include_expired,
        }),
    )
    .await?;
    let body = html! {
        h1 { "Allow and block lists" }
        p.empty { "The scoring service applies a change within its refresh interval: a blocked value is declined, an allowed one never alerted." }
        form.filters method="post" action="/console/admin/lists" {
            input type="hidden" name="csrf" value=(signed.csrf);
            label { "List" select name="list" { @for l in ListName::ALL { option value=(l.as_str()) { (l.as_str()) } } } }
            label { "Kind" select name="kind" { @for k in ListKind::ALL { option value=(k.as_str()) { (k.as_str()) } } } }
            label { "Value" input type="text" name="value" required; }
            label { "Reason" input type="text" name="reason" maxlength="1000"; }
            label { "Until" input type="datetime-local" name="expires_at"; }
            button type="submit" { "Add" }
        }
        p { @if include_expired { a href="/console/admin/lists" { "Live entries only" } } @else { a href="/console/admin/lists?expired=1" { "With the expired" } } }
        table {
            tr { th { "List" } th { "Kind" } th { "Value" } th { "Reason" } th { "Until" } th { "By" } th {} }
            @for e in &entries.entries {
                tr {
                    td { (e.list.as_str()) } td { (e.kind.as_str()) } td { (card_shown(&e.value)) }
                    td { (e.reason.as_deref().unwrap_or("")) }
                    td { (e.expires_at.map(page::time).unwrap_or_default()) }
                    td { (e.created_by) }
                    td {
                        form method="post" action={"/console/admin/lists/" (e.id)} {
                            input type="hidden" name="csrf" value=(signed.csrf);
                            button type="submit" name="action" value="expire" { "Expire now" }
                            " "
                            button type="submit" name="action" value="remove" { "Remove" }
                        }
                    }
                }
            }
        }
    };
    Ok(page::shell("Lists", Some(&signed), &body).into_response())
}

pub async fn create(
    State(api): State<Api>,
    signed: Signed,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(ADMIN, &form)?;
    let required = |name: &str| ApiError::BadRequest(format!("{name}: choose one"));
    let new = NewEntry {
        list: form
            .parsed("list", |l| ListName::parse(l).ok_or("no such list"))?
            .ok_or_else(|| required("list"))?,
        kind: form
            .parsed("kind", |k| ListKind::parse(k).ok_or("no such kind"))?
            .ok_or_else(|| required("kind"))?,
        value: form.get("value").unwrap_or_default().to_owned(),
        reason: form.get("reason").map(str::to_owned),
        expires_at: form.parsed("expires_at", moment)?,
    };
    lists::create(State(api), Extension(signed.principal.clone()), Json(new)).await?;
    Ok(Redirect::to("/console/admin/lists").into_response())
}

pub async fn change(
    State(api): State<Api>,
    signed: Signed,
    axum::extract::Path(id): axum::extract::Path<i64>,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(ADMIN, &form)?;
    let caller = Extension(signed.principal.clone());
    match form.get("action") {
        Some("expire") => {
            let now = EntryChange {
                reason: None,
                expires_at: Some(Utc::now()),
            };
            lists::update(State(api), caller, Path(id), Json(now)).await?;
        }
        Some("remove") => {
            lists::delete(State(api), caller, Path(id)).await?;
        }
        _ => return Err(ApiError::BadRequest("action: expire or remove".into()).into()),
    }
    Ok(Redirect::to("/console/admin/lists").into_response())
}
