//! The queue: `GET /v1/alerts`'s filters and orders as a form, its keyset pages, new alerts
//! announced as they arrive (the live feed), and claiming or closing the alerts checked.

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::de::DeserializeOwned;

use super::form::{Fields, moment};
use super::page::{self, ConsoleError, badge, card_shown, encode};
use super::session::Signed;
use super::work::{Asked, change};
use crate::alerts::AlertSummary;
use crate::alerts::queue::{AlertPage, AlertQuery, list};
use crate::alerts::work::{BulkChange, BulkItem, bulk};
use crate::auth::INVESTIGATE;
use crate::extract::{Json, Query};
use crate::{Api, ApiError};

/// The filters the form has, as the query string names them.
const FILTERS: [&str; 11] = [
    "status",
    "decision",
    "min_score",
    "max_score",
    "from",
    "to",
    "card_id",
    "merchant_id",
    "reason",
    "assignee",
    "sort",
];

/// One page of the queue.
pub async fn page(
    State(api): State<Api>,
    signed: Signed,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    signed.require(INVESTIGATE)?;
    let form = Fields::parse(query.unwrap_or_default().as_bytes());
    let listed = match alert_query(&form) {
        Ok(query) => list(
            State(api),
            Extension(signed.principal.clone()),
            Query(query),
        )
        .await
        .map(|Json(page)| page),
        Err(e) => Err(e),
    };
    let (status, found) = match listed {
        Ok(page) => (StatusCode::OK, Ok(page)),
        Err(ApiError::BadRequest(problem)) => (StatusCode::BAD_REQUEST, Err(problem)),
        Err(e) => return Err(e.into()),
    };
    let body = html! {
        h1 { "Alert queue" }
        (filters(&form))
        div #live hidden {
            span #live-count { "0" } " new alerts. "
            a href=(link(&form, None)) { "Show them" }
        }
        @match &found {
            Ok(page) => (alerts(&signed, &form, page)),
            Err(problem) => p.problem role="alert" { (problem) },
        }
    };
    Ok((status, page::shell("Queue", Some(&signed), &body)).into_response())
}

/// The query string of this queue with `cursor` (the first page without).
fn link(form: &Fields, cursor: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for name in FILTERS {
        if let Some(value) = form.get(name) {
            query.append_pair(name, value);
        }
    }
    if let Some(cursor) = cursor {
        query.append_pair("cursor", cursor);
    }
    format!("/console/queue?{}", query.finish())
}

fn alert_query(form: &Fields) -> Result<AlertQuery, ApiError> {
    Ok(AlertQuery {
        status: form.parsed("status", choice)?,
        decision: form.parsed("decision", choice)?,
        min_score: form.parsed("min_score", str::parse)?,
        max_score: form.parsed("max_score", str::parse)?,
        from: form.parsed("from", moment)?,
        to: form.parsed("to", moment)?,
        card_id: form.get("card_id").map(str::to_owned),
        merchant_id: form.get("merchant_id").map(str::to_owned),
        reason: form.get("reason").map(str::to_owned),
        assignee: form.get("assignee").map(str::to_owned),
        sort: form.parsed("sort", choice)?,
        limit: None,
        cursor: form.get("cursor").map(str::to_owned),
    })
}

/// One of an enum's values, as the API's JSON names it.
fn choice<T: DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| format!("{value:?} is not one of the choices"))
}

fn filters(form: &Fields) -> Markup {
    let text = |name: &'static str, label: &'static str| {
        html! {
            label { (label) input type="text" name=(name) value=[form.get(name)]; }
        }
    };
    let select = |name: &'static str, label: &'static str, options: &[(&str, &str)]| {
        html! {
            label { (label)
                select name=(name) {
                    @for (value, shown) in options {
                        option value=(value) selected[form.get(name) == Some(*value)] { (shown) }
                    }
                }
            }
        }
    };
    html! {
        form.filters method="get" action="/console/queue" {
            (select("status", "Status", &[("", "any"), ("open", "open"), ("in_review", "in review"), ("closed", "closed")]))
            (select("decision", "Decision", &[("", "any"), ("review", "review"), ("decline", "decline")]))
            label { "Score from" input type="number" name="min_score" min="0" max="1" step="0.01" value=[form.get("min_score")]; }
            label { "to" input type="number" name="max_score" min="0" max="1" step="0.01" value=[form.get("max_score")]; }
            label { "From" input type="datetime-local" name="from" value=[form.get("from")]; }
            label { "Until" input type="datetime-local" name="to" value=[form.get("to")]; }
            (text("card_id", "Card"))
            (text("merchant_id", "Merchant"))
            (text("reason", "Reason"))
            (text("assignee", "Assignee"))
            (select("sort", "Order", &[("newest", "newest first"), ("score", "highest score first")]))
            button type="submit" { "Filter" }
            a href="/console/queue" { "Clear" }
        }
    }
}

fn alerts(signed: &Signed, form: &Fields, page: &AlertPage) -> Markup {
    html! {
        @if page.alerts.is_empty() {
            p.empty { "No alerts match." }
        } @else {
            form #bulk method="post" action="/console/queue/bulk" {
                input type="hidden" name="csrf" value=(signed.csrf);
                div.actions {
                    "Checked alerts: "
                    button type="submit" name="action" value="claim" { "Claim" }
                    button type="submit" name="action" value="fraud" { "Close as fraud" }
                    button type="submit" name="action" value="genuine" { "Close as genuine" }
                    span.keys { "Keys: j/k move, Enter opens, x checks" }
                }
                table.queue {
                    thead { tr {
                        th { input type="checkbox" #check-all title="Check all"; }
                        th { "When" } th { "Score" } th { "Decision" } th { "Reasons" }
                        th { "Card" } th { "Merchant" } th { "Status" } th { "Assignee" }
                    } }
                    tbody {
                        @for alert in &page.alerts { (row(alert)) }
                    }
                }
            }
        }
        nav.pages {
            @if form.get("cursor").is_some() { a href=(link(form, None)) { "First page" } }
            @if let Some(next) = &page.next_cursor { a rel="next" href=(link(form, Some(next))) { "Next page" } }
        }
    }
}

fn row(alert: &AlertSummary) -> Markup {
    let href = format!("/console/alerts/{}", encode(&alert.id));
    html! {
        tr data-href=(href) {
            td {
                input type="checkbox" name="id" value=(alert.id);
                input type="hidden" name={"v-" (alert.id)} value=(alert.version);
                input type="hidden" name={"s-" (alert.id)} value=(alert.status.as_str());
            }
            td { a href=(href) { (page::time(alert.occurred_at)) } }
            td.score { (page::score(alert.score)) }
            td { (badge(alert.decision.as_str())) }
            td { (alert.reasons.join(", ")) }
            td { a href={"/console/cards/" (encode(&alert.card_id))} { (card_shown(&alert.card_id)) } }
            td { (alert.merchant_id) }
            td { (badge(alert.status.as_str())) }
            td { (alert.assignee.as_deref().unwrap_or("")) }
        }
    }
}

/// Claims or closes the alerts checked; back to the queue when every change was made, or a
/// page that says which were refused and why.
pub async fn bulk_change(
    State(api): State<Api>,
    signed: Signed,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(INVESTIGATE, &form)?;
    let action = form.get("action").unwrap_or_default();
    let mut changes = vec![];
    for id in form.all("id") {
        let version = form
            .parsed(&format!("v-{id}"), str::parse::<i32>)?
            .ok_or_else(|| ApiError::BadRequest(format!("no version for alert {id}")))?;
        let status = form.get(&format!("s-{id}"));
        changes.push(BulkItem {
            id: id.to_owned(),
            change: change(&Asked {
                action,
                version,
                status,
                ..Asked::default()
            })?,
        });
    }
    let Json(result) = bulk(
        State(api),
        Extension(signed.principal.clone()),
        Json(BulkChange { changes }),
    )
    .await?;
    let refused: Vec<_> = result.results.iter().filter(|r| r.status != 200).collect();
    if refused.is_empty() {
        return Ok(Redirect::to("/console/queue").into_response());
    }
    let body = html! {
        h1 { "Some alerts were not changed" }
        p { (result.results.len() - refused.len()) " changed; these were refused:" }
        ul.refused {
            @for outcome in &refused {
                li {
                    a href={"/console/alerts/" (encode(&outcome.id))} { (outcome.id) } ": "
                    (outcome.error.as_ref().map_or("", |e| e.message.as_str()))
                }
            }
        }
        p { a href="/console/queue" { "Back to the queue" } }
    };
    Ok((
        StatusCode::CONFLICT,
        page::shell("Not changed", Some(&signed), &body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Status;

    #[test]
    fn the_queue_form_becomes_the_api_query() {
        let form = Fields::parse(b"status=in_review&min_score=0.7&sort=score&reason=&card_id=c1");
        let query = alert_query(&form).unwrap();
        assert_eq!(query.status, Some(Status::InReview));
        assert_eq!(query.min_score, Some(0.7));
        assert_eq!(query.reason, None);
        assert_eq!(query.card_id.as_deref(), Some("c1"));
        let bad = alert_query(&Fields::parse(b"status=lost")).unwrap_err();
        assert!(bad.to_string().contains("status"), "{bad}");
        assert_eq!(
            link(
                &Fields::parse(b"status=open&cursor=abc&junk=1"),
                Some("n x")
            ),
            "/console/queue?status=open&cursor=n+x"
        );
    }
}
