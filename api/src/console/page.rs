//! What every console page shares: the shell (head, navigation by role, sign-out), the error
//! page, and how scores, times and decisions are shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::Signed;
use crate::cards::masked;
use crate::{ApiError, Role};

/// A console page that could not be shown.
#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: to the sign-in page.
    SignIn,
    /// A form without this session's token.
    Csrf,
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthorized => ConsoleError::SignIn,
            e => ConsoleError::Api(e),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ConsoleError::SignIn => return Redirect::to("/console/sign-in").into_response(),
            ConsoleError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form was not sent from this session's pages: reload the page and try again."
                    .to_owned(),
            ),
            ConsoleError::Api(e) => (e.status(), e.body().error.message),
        };
        let body = html! {
            h1 { (status.canonical_reason().unwrap_or("Error")) }
            p.problem role="alert" { (message) }
            p { a href="/console/queue" { "Back to the queue" } }
        };
        (status, shell("Error", None, &body)).into_response()
    }
}

/// A whole page: `body` under the navigation `signed` may use.
pub fn shell(title: &str, signed: Option<&Signed>, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Vigil" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/console/queue" { "Vigil" }
                    @if let Some(signed) = signed {
                        nav {
                            a href="/console/queue" { "Queue" }
                            a href="/console/system" { "System" }
                            @if signed.principal.role == Role::Admin {
                                a href="/console/admin/keys" { "Keys" }
                                a href="/console/admin/lists" { "Lists" }
                                a href="/console/admin/models" { "Models" }
                                a href="/console/admin/rules" { "Rules" }
                                a href="/console/admin/audit" { "Audit" }
                            }
                        }
                        form.sign-out method="post" action="/console/sign-out" {
                            span.who { (signed.principal.name) " (" (signed.principal.role.as_str()) ")" }
                            input type="hidden" name="csrf" value=(signed.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn score(score: f32) -> String {
    format!("{score:.3}")
}

pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A decision or status as a badge its CSS class colours.
pub fn badge(word: &str) -> Markup {
    html! { span class={"badge " (word)} { (word.replace('_', " ")) } }
}

/// An amount in minor units as people read it (two decimals; the currency's own exponent is
/// not known here).
pub fn amount(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", minor / 100, minor % 100)
}

/// A card as people read it: masked when it is a card number's token.
pub fn card_shown(card_id: &str) -> String {
    masked(card_id).unwrap_or_else(|| card_id.to_owned())
}

/// `value` as one segment of a path.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
