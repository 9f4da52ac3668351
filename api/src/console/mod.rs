//! The investigators' console at `/console/`: server-rendered pages (maud) over the API's own
//! handlers, called in process, so a page shows and does exactly what the API would, with the
//! same role checks, card-read logging, optimistic concurrency and audit. Signing in turns an
//! API key into a session ([`session`]); every form carries the session's CSRF token. The one
//! stylesheet and script are in the binary; pages load nothing from another host (their
//! `Content-Security-Policy` says `'self'` only) and work without the script, which adds
//! keyboard triage and the live count of new alerts.

mod admin;
mod alert;
mod card;
mod form;
mod page;
mod queue;
mod session;
mod story;
mod system;
mod work;

pub use system::History;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::Api;
use crate::auth::INVESTIGATE;
use page::ConsoleError;
use session::Signed;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/queue") }))
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/queue") }),
        )
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/queue", get(queue::page))
        .route("/console/queue/bulk", post(queue::bulk_change))
        .route("/console/alerts/{id}", get(alert::page).post(alert::act))
        .route("/console/cards/{card_id}", get(card::page))
        .route("/console/live", get(live))
        .route("/console/system", get(system::page))
        .route("/console/system/charts", get(system::fragment))
        .merge(admin::routes())
        .layer(axum::middleware::map_response(page_headers))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/assets/console.js", get(script))
}

/// New alerts for the queue's live count, while the session's key stays live.
async fn live(State(api): State<Api>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(INVESTIGATE)?;
    let feed = crate::live::alerts(State(api), Extension(signed.principal)).await?;
    Ok(feed.into_response())
}

/// Pages hold card and case data: never cached, never framed, and allowed to load only the
/// console's own assets.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn stylesheet() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}
