//! The `OpenAPI` spec, generated from the handlers' annotations and served at `/openapi.json`,
//! with a browsable page at `/docs`.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::Api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigil investigator API",
        description = "The alert queue, explanations, verdicts that train the model, card risk, \
            allow and block lists, and API keys. Every route under /v1 takes an API key as \
            `Authorization: Bearer <key>`; errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerKey),
    tags(
        (name = "alerts", description = "The alert queue and its work (investigator, admin)"),
        (name = "cards", description = "Card risk (investigator, admin)"),
        (name = "lists", description = "Allow and block lists (admin)"),
        (name = "keys", description = "API keys (admin)"),
    )
)]
struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "api_key",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The spec's fixed part; the routers add their paths and schemas.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `/openapi.json` and `/docs`.
pub fn routes(spec: &utoipa::openapi::OpenApi) -> Router<Api> {
    let json: Arc<str> = spec.to_pretty_json().expect("the spec serializes").into();
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    json.to_string(),
                )
                    .into_response()
            }),
        )
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
}

/// Redoc renders the spec (its script comes from a CDN, so the page needs the internet).
const DOCS_PAGE: &str = r#"<!doctype html>
<html>
  <head>
    <title>Vigil API</title>
    <meta charset="utf-8">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="https://cdn.redoc.ly/redoc/latest/bundles/redoc.standalone.js"></script>
  </body>
</html>
"#;
