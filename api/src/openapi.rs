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
        description = "The alert queue, explanations, verdicts that train the model, decisions, card risk, \
            allow and block lists, API keys, the model registry and the rules. Every route under /v1 takes an API key as \
            `Authorization: Bearer <key>`; errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerKey),
    tags(
        (name = "alerts", description = "The alert queue and its work (investigator, admin)"),
        (name = "cards", description = "Card risk (investigator, admin)"),
        (name = "decisions", description = "Transactions' decisions (ingest, investigator, admin)"),
        (name = "lists", description = "Allow and block lists (admin)"),
        (name = "keys", description = "API keys (admin)"),
        (name = "models", description = "The model registry: champion, shadows, candidates (admin)"),
        (name = "rules", description = "Rules: drafts tested on history, approved by a second admin, \
            published as rule set versions (admin)"),
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

/// The answers any operation may give: a malformed request (path, query or body), no valid
/// key, a role that may not call it, a body too large, a key over its rate, a backing service
/// down. Each operation lists its own answers besides.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder, content::Content};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "ErrorBody",
                        )))),
                    )
                    .build(),
            )
        };
        let common = [
            ("400", "A malformed path, query or body"),
            ("401", "No valid API key"),
            ("403", "The key's role may not do this"),
            ("413", "The body is too large"),
            ("429", "The key is over its rate; see Retry-After"),
            ("503", "A backing service is unavailable; retry"),
        ];
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ]
            .into_iter()
            .flatten()
            {
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description));
                }
            }
        }
        if let Some(components) = openapi.components.as_mut() {
            components
                .schemas
                .entry("ErrorBody".to_owned())
                .or_insert_with(<crate::error::ErrorBody as utoipa::PartialSchema>::schema);
            components
                .schemas
                .entry("ErrorDetail".to_owned())
                .or_insert_with(<crate::error::ErrorDetail as utoipa::PartialSchema>::schema);
        }
    }
}

/// The spec's fixed part; the routers add their paths and schemas.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `/openapi.json` (with the answers every operation may give) and `/docs`.
pub fn routes(mut spec: utoipa::openapi::OpenApi) -> Router<Api> {
    CommonErrors.modify(&mut spec);
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
        .route(
            "/docs/redoc.standalone.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=86400"),
                    ],
                    REDOC,
                )
            }),
        )
}

/// Redoc 2.5.4 (MIT, npm `redoc`), served from the binary: the page works offline and loads no
/// script from anywhere else.
const REDOC: &str = include_str!("../assets/redoc.standalone.js");

/// Redoc renders the spec.
const DOCS_PAGE: &str = r#"<!doctype html>
<html>
  <head>
    <title>Vigil API</title>
    <meta charset="utf-8">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="/docs/redoc.standalone.js"></script>
  </body>
</html>
"#;
