//! One alert: the transaction, the decision and why (the rules that held with the values they
//! read, the model's top contributions as bars, the sentences), the card's recent payments as a
//! timeline, the other open alerts on its card or merchant, its audit history, and the forms
//! that claim, release and close it.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde_json::Value;

use super::form::Fields;
use super::page::{self, ConsoleError, badge, card_shown, encode};
use super::session::Signed;
use super::story;
use super::work::{Asked, change};
use crate::alerts::detail::get;
use crate::alerts::work::patch;
use crate::alerts::{AlertSummary, Status};
use crate::auth::INVESTIGATE;
use crate::extract::{Json, Path};
use crate::{Api, ApiError};

/// An audit record of the alert.
#[derive(sqlx::FromRow)]
struct Audited {
    at: DateTime<Utc>,
    actor: String,
    after: Option<String>,
}

pub async fn page(
    State(api): State<Api>,
    signed: Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ConsoleError> {
    signed.require(INVESTIGATE)?;
    let Json(detail) = get(
        State(api.clone()),
        Extension(signed.principal.clone()),
        Path(id.clone()),
    )
    .await?;
    let history: Vec<Audited> =
        sqlx::query_as("SELECT at, actor, after FROM audit_log WHERE target = $1 ORDER BY seq")
            .bind(format!("alert {id}"))
            .fetch_all(&api.pool)
            .await
            .map_err(ApiError::from)?;
    let (previous, next) = neighbours(&api, &detail.alert).await?;
    let alert = &detail.alert;
    let body = html! {
        nav.neighbours {
            @if let Some(previous) = previous { a #previous href={"/console/alerts/" (encode(&previous))} { "Previous (k)" } }
            a href="/console/queue" { "Queue" }
            @if let Some(next) = next { a #next href={"/console/alerts/" (encode(&next))} { "Next (j)" } }
        }
        h1 { "Alert " (alert.id) " " (badge(alert.decision.as_str())) " " (badge(alert.status.as_str())) }
        div.columns {
            div {
                section.summary {
                    dl {
                        dt { "Score" } dd.score { (page::score(alert.score)) }
                        dt { "Model" } dd { (detail.model_version) }
                        @if let Some(version) = detail.rule_set_version {
                            dt { "Rules" } dd { "rule set version " (version) }
                        }
                        dt { "Amount" } dd { (page::amount(detail.amount_minor, &detail.currency)) }
                        dt { "When" } dd { (page::time(alert.occurred_at)) }
                        dt { "Card" } dd { a href={"/console/cards/" (encode(&alert.card_id))} { (detail.card_masked.clone().unwrap_or_else(|| card_shown(&alert.card_id))) } }
                        dt { "Merchant" } dd { (alert.merchant_id) }
                        dt { "Assignee" } dd #assignee { (alert.assignee.as_deref().unwrap_or("nobody")) }
                        @if let Some(disposition) = alert.disposition { dt { "Verdict" } dd #verdict { (disposition.as_str()) } }
                        @if let Some(note) = &detail.note { dt { "Note" } dd { (note) } }
                    }
                }
                (work(&signed, alert))
            }
            (explanation(detail.explanation.as_ref()))
        }
        (transaction(detail.transaction.as_ref()))
        (story::recent(&detail.recent_transactions, Some(&alert.id)))
        (related(&detail.related_alerts))
        section {
            h2 { "History" }
            ol.history {
                li { (page::time(alert.created_at)) ": raised by the scoring service" }
                @for record in &history {
                    li { (page::time(record.at)) ": " (record.actor) " " (record.after.as_deref().unwrap_or("")) }
                }
            }
        }
    };
    Ok(page::shell(&format!("Alert {id}"), Some(&signed), &body).into_response())
}

/// The alerts before and after this one in the queue of alerts still to work, newest first.
async fn neighbours(
    api: &Api,
    alert: &AlertSummary,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let side = |comparison: &str, order: &str| {
        format!(
            "SELECT transaction_id FROM alerts WHERE status <> 'closed'
               AND (occurred_at, transaction_id) {comparison} ($1, $2)
             ORDER BY occurred_at {order}, transaction_id {order} LIMIT 1"
        )
    };
    let previous = sqlx::query_scalar(sqlx::AssertSqlSafe(side(">", "ASC")))
        .bind(alert.occurred_at)
        .bind(&alert.id)
        .fetch_optional(&api.pool)
        .await?;
    let next = sqlx::query_scalar(sqlx::AssertSqlSafe(side("<", "DESC")))
        .bind(alert.occurred_at)
        .bind(&alert.id)
        .fetch_optional(&api.pool)
        .await?;
    Ok((previous, next))
}

fn work(signed: &Signed, alert: &AlertSummary) -> Markup {
    let action = format!("/console/alerts/{}", encode(&alert.id));
    let hidden = html! {
        input type="hidden" name="csrf" value=(signed.csrf);
        input type="hidden" name="version" value=(alert.version);
        input type="hidden" name="status" value=(alert.status.as_str());
    };
    html! {
        @if alert.status != Status::Closed {
            section.work {
                form method="post" action=(action) {
                    (hidden)
                    @if alert.assignee.as_deref() != Some(signed.principal.name.as_str()) {
                        button #claim type="submit" name="action" value="claim" { "Claim (c)" }
                    } @else {
                        button type="submit" name="action" value="release" { "Release to the queue" }
                    }
                }
                form method="post" action=(action) {
                    (hidden)
                    label for="assignee-name" { "Assign to" }
                    input #assignee-name type="text" name="assignee" required;
                    button type="submit" name="action" value="assign" { "Assign" }
                }
                form #verdict-form method="post" action=(action) {
                    (hidden)
                    label for="note" { "Note" }
                    textarea #note name="note" rows="2" maxlength="10000" {}
                    button #fraud type="submit" name="action" value="fraud" { "Close as fraud (f)" }
                    button #genuine type="submit" name="action" value="genuine" { "Close as genuine (g)" }
                }
            }
        }
    }
}

/// Applies the form's action; back to the alert.
pub async fn act(
    State(api): State<Api>,
    signed: Signed,
    axum::extract::Path(id): axum::extract::Path<String>,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(INVESTIGATE, &form)?;
    let version = form
        .parsed("version", str::parse::<i32>)?
        .ok_or_else(|| ApiError::BadRequest("the form has no version".into()))?;
    let change = change(&Asked {
        action: form.get("action").unwrap_or_default(),
        version,
        status: form.get("status"),
        note: form.get("note"),
        assignee: form.get("assignee"),
    })?;
    patch(
        State(api),
        Extension(signed.principal.clone()),
        Path(id.clone()),
        Json(change),
    )
    .await?;
    Ok(Redirect::to(&format!("/console/alerts/{}", encode(&id))).into_response())
}

fn explanation(explanation: Option<&Value>) -> Markup {
    let Some(explanation) = explanation else {
        return html! {};
    };
    let list = |name: &str| explanation[name].as_array().cloned().unwrap_or_default();
    let rules = list("rules");
    let model = list("model");
    let comparisons = list("comparisons");
    let widest = model
        .iter()
        .filter_map(|c| c["log_odds"].as_f64())
        .fold(0.0_f64, |m, v| m.max(v.abs()))
        .max(1e-6);
    html! {
        section.explanation {
            h2 { "Why" }
            @if !comparisons.is_empty() {
                ul.comparisons { @for sentence in &comparisons { li { (sentence.as_str().unwrap_or_default()) } } }
            }
            @for rule in &rules {
                div.rule {
                    h3 { (text(&rule["reason"])) " " small { (text(&rule["description"])) } }
                    @if let Some(when) = rule["when"].as_str() { p.when { "holds when " code { (when) } } }
                    p.effect {
                        @if let Some(score) = rule["score"].as_f64() { "adds " (format!("{score:+.2}")) " to the score" }
                        @if let Some(action) = rule["action"].as_str() { "decides " (action) }
                    }
                    @if let Some(values) = rule["values"].as_object() {
                        table.values {
                            tr { th { "read" } th { "value" } }
                            @for (feature, value) in values {
                                tr { td { (feature) } td { (number(value)) } }
                            }
                        }
                    }
                }
            }
            @if !model.is_empty() {
                h3 { "The model's strongest reasons" }
                svg.contributions width="100%" viewBox=(format!("0 0 640 {}", model.len() * 26 + 6)) role="img" aria-label="Feature contributions in log-odds" {
                    line x1="320" y1="0" x2="320" y2=(model.len() * 26 + 6) class="axis" {}
                    @for (i, contribution) in model.iter().enumerate() {
                        @let log_odds = contribution["log_odds"].as_f64().unwrap_or(0.0);
                        @let width = (log_odds.abs() / widest * 150.0).max(1.0);
                        @let x = if log_odds >= 0.0 { 320.0 } else { 320.0 - width };
                        @let y = i * 26 + 4;
                        rect x=(format!("{x:.1}")) y=(y) width=(format!("{width:.1}")) height="18" class=(if log_odds >= 0.0 { "raises" } else { "lowers" }) {}
                        text x="4" y=(y + 14) { (text(&contribution["feature"])) " = " (number(&contribution["value"])) }
                        text x=(if log_odds >= 0.0 { 480 } else { 330 }) y=(y + 14) { (format!("{log_odds:+.2}")) }
                    }
                }
            }
        }
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn number(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "missing".to_owned(), |v| format!("{v:.3}"))
}

fn transaction(transaction: Option<&Value>) -> Markup {
    let Some(fields) = transaction.and_then(Value::as_object) else {
        return html! {};
    };
    html! {
        section {
            h2 { "Transaction" }
            table.fields {
                @for (name, value) in fields {
                    tr { th { (name) } td { (value.as_str().map_or_else(|| value.to_string(), str::to_owned)) } }
                }
            }
        }
    }
}

fn related(alerts: &[AlertSummary]) -> Markup {
    html! {
        section {
            h2 { "Other open alerts on this card or merchant" }
            @if alerts.is_empty() { p.empty { "None." } }
            ul.related {
                @for a in alerts {
                    li {
                        a href={"/console/alerts/" (encode(&a.id))} { (a.id) } " · " (page::time(a.occurred_at))
                        " · score " (page::score(a.score)) " · " (card_shown(&a.card_id)) " at " (a.merchant_id)
                    }
                }
            }
        }
    }
}
