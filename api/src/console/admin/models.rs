//! The model registry: each model with its validation figures and calibration (predicted
//! against observed fraud rate, as a chart), its drift (PSI) while served, and the moves
//! (promote to champion or shadow, retire).

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use vigil_models::artifact::Validation;
use vigil_models::evaluate::CalibrationBin;
use vigil_registry::Status;

use crate::auth::ADMIN;
use crate::console::form::Fields;
use crate::console::page::{self, ConsoleError, badge, encode};
use crate::console::session::Signed;
use crate::console::system::chart;
use crate::extract::{Json, Path};
use crate::registry::{self, Promotion, Target};
use crate::{Api, ApiError};

pub async fn page(State(api): State<Api>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(ADMIN)?;
    let Json(models) = registry::list(State(api.clone())).await?;
    let drift: Vec<_> = api
        .history
        .series()
        .into_iter()
        .filter(|s| s.name.starts_with("PSI"))
        .collect();
    let body = html! {
        h1 { "Models" }
        section {
            h2 { "Drift while served" }
            @if drift.is_empty() { p.empty { "No model served by this process yet." } }
            @for series in &drift { (chart(series)) }
        }
        @for model in &models.models {
            @let validation = model.validation.as_ref().and_then(|v| serde_json::from_value::<Validation>(v.0.clone()).ok());
            section.model {
                h2 { (model.version) " " (badge(model.status.as_str())) }
                dl {
                    dt { "Kind" } dd { (model.kind) }
                    dt { "Trained on" } dd { (page::time(model.trained_from)) " to " (page::time(model.trained_to)) }
                    dt { "Registered" } dd { (page::time(model.created_at)) }
                    @if let Some(v) = &validation {
                        @let e = &v.evaluation;
                        dt { "Validation" } dd {
                            (e.examples) " examples, " (e.frauds) " frauds: AUC-ROC " (optional(e.auc_roc))
                            ", AP " (optional(e.average_precision)) ", CP@100 " (optional(e.card_precision_at_100))
                            ", calibration error " (format!("{:.4}", e.expected_calibration_error))
                        }
                    }
                }
                @if let Some(v) = &validation { (calibration(&v.evaluation.calibration)) }
                (moves(&signed, &model.version, model.status))
            }
        }
    };
    Ok(page::shell("Models", Some(&signed), &body).into_response())
}

fn optional(figure: Option<f64>) -> String {
    figure.map_or_else(|| "n/a".to_owned(), |f| format!("{f:.3}"))
}

/// Observed fraud rate against mean predicted probability per bin, on log scales (the bins are
/// fine where fraud scores fall), with the diagonal of a calibrated model.
fn calibration(bins: &[CalibrationBin]) -> Markup {
    const SIZE: f64 = 220.0;
    let position = |p: f64| {
        // 0.0001 .. 1 on a log scale.
        let decades = (p.max(1e-4).log10() + 4.0) / 4.0;
        decades.clamp(0.0, 1.0) * SIZE
    };
    html! {
        figure.calibration {
            figcaption { "Calibration: observed fraud rate (up) against predicted (across), log scales" }
            svg width=(SIZE + 10.0) height=(SIZE + 10.0) role="img" aria-label="Calibration chart" {
                line x1="0" y1=(SIZE) x2=(SIZE) y2="0" class="axis" {}
                line x1="0" y1=(SIZE) x2=(SIZE) y2=(SIZE) class="axis" {}
                @for bin in bins.iter().filter(|b| b.examples > 0) {
                    circle cx=(format!("{:.1}", position(bin.mean_predicted)))
                        cy=(format!("{:.1}", SIZE - position(bin.observed_fraud_rate))) r="4" class="review" {
                        title { (bin.examples) " examples up to " (bin.up_to) ": predicted "
                            (format!("{:.4}", bin.mean_predicted)) ", observed " (format!("{:.4}", bin.observed_fraud_rate)) }
                    }
                }
            }
        }
    }
}

fn moves(signed: &Signed, version: &str, status: Status) -> Markup {
    html! {
        form method="post" action={"/console/admin/models/" (encode(version))} {
            input type="hidden" name="csrf" value=(signed.csrf);
            @if status != Status::Champion && status != Status::Retired {
                button type="submit" name="action" value="champion" { "Promote to champion" } " "
            }
            @if status == Status::Candidate {
                button type="submit" name="action" value="shadow" { "Run as shadow" } " "
            }
            @if status != Status::Retired {
                button type="submit" name="action" value="retire" { "Retire" }
            }
        }
    }
}

pub async fn change(
    State(api): State<Api>,
    signed: Signed,
    axum::extract::Path(version): axum::extract::Path<String>,
    form: Fields,
) -> Result<Response, ConsoleError> {
    signed.submitted(ADMIN, &form)?;
    let caller = Extension(signed.principal.clone());
    let promote = |to| Json(Promotion { to });
    match form.get("action") {
        Some("champion") => {
            registry::promote(State(api), caller, Path(version), promote(Target::Champion)).await?;
        }
        Some("shadow") => {
            registry::promote(State(api), caller, Path(version), promote(Target::Shadow)).await?;
        }
        Some("retire") => {
            registry::retire(State(api), caller, Path(version)).await?;
        }
        _ => {
            return Err(ApiError::BadRequest("action: champion, shadow or retire".into()).into());
        }
    }
    Ok(Redirect::to("/console/admin/models").into_response())
}
