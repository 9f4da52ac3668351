//! The admins' pages: keys, allow and block lists, the model registry, rules and the audit trail,
//! over the API's own handlers (each change audited there). Every page and form needs an admin
//! key's session.

mod audit;
mod keys;
mod lists;
mod models;
mod rules;

use axum::Router;
use axum::routing::{get, post};

use crate::Api;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/console/admin/keys", get(keys::page).post(keys::create))
        .route("/console/admin/keys/{id}/revoke", post(keys::revoke))
        .route("/console/admin/lists", get(lists::page).post(lists::create))
        .route("/console/admin/lists/{id}", post(lists::change))
        .route("/console/admin/models", get(models::page))
        .route("/console/admin/models/{version}", post(models::change))
        .route("/console/admin/rules", get(rules::list).post(rules::create))
        .route("/console/admin/rules/new", get(rules::new))
        .route("/console/admin/rules/versions", get(rules::versions))
        .route(
            "/console/admin/rules/versions/{version}/rollback",
            post(rules::roll_back),
        )
        .route(
            "/console/admin/rules/{id}",
            get(rules::show).post(rules::act),
        )
        .route("/console/admin/audit", get(audit::page).post(audit::verify))
}
