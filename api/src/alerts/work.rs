//! Working an alert: `PATCH /v1/alerts/{id}` and `POST /v1/alerts/bulk`.
//!
//! Status moves `open -> in_review -> closed` (or back from `in_review` to `open`, which
//! releases the alert to the queue); closing needs a disposition; a closed alert is final.
//! Each change names the version it was made against: a stale one gets 409
//! `version_conflict`, so two investigators never overwrite each other; a change the alert's
//! state does not allow gets 409 `invalid_change`. A new disposition is queued for `labels.v1`
//! as a label from the `investigator` source (the model learns from it) in the change's own
//! transaction, with its audit record, and sent right after the commit ([`outbox`]): the
//! alert's row lock is never held waiting for the broker, and a broker that is down delays
//! the label, not the investigator.

use axum::Extension;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use vigil_common::prepare::{self, Prepared};
use vigil_schema::{CardId, Label, LabelSource, Timestamp, TransactionId};

use super::{AlertSummary, Disposition, Status, outbox, summary_columns};
use crate::Api;
use crate::audit::Change;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::extract::{Json, Path};

const MAX_NOTE_CHARS: usize = 10_000;

/// A change to an alert; fields left out stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertChange {
    /// The alert's version this change was made against.
    #[serde(deserialize_with = "crate::extract::whole_number")]
    pub version: i32,
    /// Assign the alert to the caller (the key's name) and, if it is open, start reviewing it.
    #[serde(default)]
    pub claim: bool,
    /// Assign the alert to this investigator.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$"
    )]
    pub assignee: Option<String>,
    pub status: Option<Status>,
    pub disposition: Option<Disposition>,
    #[schema(max_length = 10_000)]
    pub note: Option<String>,
}

/// What investigators change of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WorkState {
    pub status: Status,
    pub assignee: Option<String>,
    pub disposition: Option<Disposition>,
    pub note: Option<String>,
}

/// Who changes an alert: the name a claim assigns it to, and whether an admin (who may change
/// an alert assigned to someone else).
#[derive(Debug, Clone, Copy)]
pub struct Changer<'a> {
    pub name: &'a str,
    pub admin: bool,
}

/// The state after `change`, made by `caller`, or why it may not be made.
pub fn apply(
    current: &WorkState,
    change: &AlertChange,
    caller: Changer<'_>,
) -> Result<WorkState, ApiError> {
    if current.status == Status::Closed {
        return Err(ApiError::InvalidChange(
            "a closed alert cannot change".into(),
        ));
    }
    if let Some(assignee) = current.assignee.as_deref()
        && assignee != caller.name
        && !caller.admin
    {
        return Err(ApiError::NotAssignee(format!(
            "the alert is assigned to {assignee}: only they (who may release it to the queue) or \
             an admin may change it"
        )));
    }
    let caller = caller.name;
    let mut next = current.clone();
    if change.claim {
        next.assignee = Some(caller.to_owned());
        if next.status == Status::Open {
            next.status = Status::InReview;
        }
    }
    if let Some(assignee) = &change.assignee {
        ApiError::check_id("assignee", assignee)?;
        next.assignee = Some(assignee.clone());
    }
    if let Some(note) = &change.note {
        if note.chars().count() > MAX_NOTE_CHARS {
            return Err(ApiError::BadRequest(format!(
                "note must be at most {MAX_NOTE_CHARS} characters"
            )));
        }
        // Free text may quote a card number: it is stored (and audited) masked.
        next.note = Some(vigil_schema::pan::redact(note).into_owned());
    }
    if change.disposition.is_some() {
        next.disposition = change.disposition;
    }
    if let Some(status) = change.status {
        let allowed = matches!(
            (next.status, status),
            (Status::Open, Status::InReview) | (Status::InReview, Status::Open | Status::Closed)
        ) || next.status == status;
        if !allowed {
            return Err(ApiError::InvalidChange(format!(
                "status cannot go from {} to {} (open -> in_review -> closed)",
                next.status.as_str(),
                status.as_str()
            )));
        }
        if status == Status::Open {
            next.assignee = None;
        }
        next.status = status;
    }
    if next.status == Status::Closed && next.disposition.is_none() {
        return Err(ApiError::InvalidChange(
            "closing an alert needs a disposition (fraud or genuine)".into(),
        ));
    }
    Ok(next)
}

/// Changes an alert.
#[utoipa::path(patch, path = "/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id (its transaction's id)",
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$")),
    request_body = AlertChange,
    responses(
        (status = 200, description = "The alert after the change", body = AlertSummary),
        (status = 400, description = "A malformed change", body = ErrorBody),
        (status = 403, description = "The alert is assigned to someone else (`not_assignee`): \
            only they or an admin may change it", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "The alert changed since that version (`version_conflict`), \
            or its state does not allow the change (`invalid_change`)", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn patch(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    Json(change): Json<AlertChange>,
) -> Result<Json<AlertSummary>, ApiError> {
    change_one(&api, &caller, &id, &change).await.map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkChange {
    #[schema(max_items = 500)]
    pub changes: Vec<BulkItem>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkItem {
    /// The alert's id.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$"
    )]
    pub id: String,
    #[serde(flatten)]
    pub change: AlertChange,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    pub results: Vec<BulkOutcome>,
}

/// What became of one change of a bulk request: `status` is the HTTP status it would have had
/// on its own.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkOutcome {
    pub id: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// Changes many alerts: each change stands on its own (its own version check and commit), and
/// the answer says what became of each.
#[utoipa::path(post, path = "/v1/alerts/bulk", tag = "alerts",
    request_body = BulkChange,
    responses(
        (status = 200, description = "What became of each change", body = BulkResult),
        (status = 400, description = "A malformed request", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn bulk(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Json(bulk): Json<BulkChange>,
) -> Result<Json<BulkResult>, ApiError> {
    if bulk.changes.len() > api.config.max_bulk {
        return Err(ApiError::BadRequest(format!(
            "at most {} changes per bulk request",
            api.config.max_bulk
        )));
    }
    let mut results = Vec::with_capacity(bulk.changes.len());
    for item in bulk.changes {
        let outcome = match change_one(&api, &caller, &item.id, &item.change).await {
            Ok(alert) => BulkOutcome {
                id: item.id,
                status: 200,
                alert: Some(alert),
                error: None,
            },
            Err(e) => BulkOutcome {
                id: item.id,
                status: e.status().as_u16(),
                alert: None,
                error: Some(e.body().error),
            },
        };
        results.push(outcome);
    }
    Ok(Json(BulkResult { results }))
}

async fn change_one(
    api: &Api,
    caller: &Principal,
    id: &str,
    change: &AlertChange,
) -> Result<AlertSummary, ApiError> {
    let mut tx = api.pool.begin().await?;
    let current: Option<(WorkState, i32, String)> = sqlx::query_as::<
        _,
        (
            Status,
            Option<String>,
            Option<Disposition>,
            Option<String>,
            i32,
            String,
        ),
    >(
        "SELECT status, assignee, disposition, note, version, card_id FROM alerts
         WHERE transaction_id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .map(|(status, assignee, disposition, note, version, card)| {
        (
            WorkState {
                status,
                assignee,
                disposition,
                note,
            },
            version,
            card,
        )
    });
    let Some((current, version, card_id)) = current else {
        return Err(ApiError::NotFound(format!("no alert {id}")));
    };
    if version != change.version {
        return Err(ApiError::Conflict(format!(
            "alert {id} is at version {version}, not {}: reload it and apply the change again",
            change.version
        )));
    }
    let changer = Changer {
        name: &caller.name,
        admin: caller.role == Role::Admin,
    };
    let next = apply(&current, change, changer)?;
    if next == current {
        return summary(&mut tx, id).await;
    }
    let summary: AlertSummary = sqlx::query_as(concat!(
        "UPDATE alerts a SET status = $2, assignee = $3, disposition = $4, note = $5,
             version = version + 1, updated_at = now()
         WHERE a.transaction_id = $1 RETURNING ",
        summary_columns!()
    ))
    .bind(id)
    .bind(next.status)
    .bind(&next.assignee)
    .bind(next.disposition)
    .bind(&next.note)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(disposition) = next
        .disposition
        .filter(|_| next.disposition != current.disposition)
    {
        let label = label(api, id, &card_id, disposition)?;
        outbox::queue(&mut tx, &label, &caller.actor()).await?;
    }
    let to_json = |s: &WorkState| serde_json::to_value(s).expect("a work state serializes");
    api.audit
        .append(
            &mut tx,
            Change {
                actor: &caller.actor(),
                action: "alert.update",
                target: &format!("alert {id}"),
                before: Some(to_json(&current)),
                after: Some(to_json(&next)),
            },
        )
        .await?;
    tx.commit().await?;
    api.labels_queued.notify_one();
    Ok(summary)
}

async fn summary(tx: &mut sqlx::PgConnection, id: &str) -> Result<AlertSummary, ApiError> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        summary_columns!(),
        " FROM alerts a WHERE a.transaction_id = $1"
    ))
    .bind(id)
    .fetch_one(tx)
    .await?)
}

/// An investigator's disposition as a `labels.v1` record, timed now.
fn label(
    api: &Api,
    transaction_id: &str,
    card_id: &str,
    disposition: Disposition,
) -> Result<Prepared, ApiError> {
    let bad = |e: vigil_schema::Error| ApiError::unavailable("label", &e);
    let label = Label {
        transaction_id: TransactionId::parse(transaction_id).map_err(bad)?,
        is_fraud: disposition == Disposition::Fraud,
        labelled_at: Timestamp::from_unix_millis(chrono::Utc::now().timestamp_millis(), 0)
            .map_err(|e| ApiError::unavailable("clock", &e))?,
        source: LabelSource::Investigator,
        card_id: Some(CardId::parse(card_id).map_err(bad)?),
    };
    Ok(prepare::label(label, &api.tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> WorkState {
        WorkState {
            status: Status::Open,
            assignee: None,
            disposition: None,
            note: None,
        }
    }

    fn change() -> AlertChange {
        AlertChange::default()
    }

    const ANA: Changer<'static> = Changer {
        name: "ana",
        admin: false,
    };

    /// An open alert after ana claimed it.
    fn claimed_by_ana() -> WorkState {
        let claim = AlertChange {
            claim: true,
            ..change()
        };
        apply(&open(), &claim, ANA).unwrap()
    }

    /// An alert assigned to someone is theirs: another investigator may neither take it over
    /// nor close it; an admin may.
    #[test]
    fn only_the_assignee_or_an_admin_changes_an_assigned_alert() {
        let ana_reviews = claimed_by_ana();
        let ben = Changer {
            name: "ben",
            admin: false,
        };
        let close = AlertChange {
            status: Some(Status::Closed),
            disposition: Some(Disposition::Genuine),
            ..change()
        };
        let take_over = AlertChange {
            claim: true,
            ..change()
        };
        for attempt in [&close, &take_over] {
            assert!(matches!(
                apply(&ana_reviews, attempt, ben),
                Err(ApiError::NotAssignee(_))
            ));
        }
        let admin = Changer {
            name: "root",
            admin: true,
        };
        assert_eq!(
            apply(&ana_reviews, &close, admin).unwrap().status,
            Status::Closed
        );
        assert_eq!(
            apply(&ana_reviews, &close, ANA).unwrap().status,
            Status::Closed
        );
    }

    #[test]
    fn a_claim_assigns_the_caller_and_starts_the_review() {
        let next = claimed_by_ana();
        assert_eq!(next.status, Status::InReview);
        assert_eq!(next.assignee.as_deref(), Some("ana"));
    }

    #[test]
    fn closing_needs_a_disposition_and_a_review() {
        let close = AlertChange {
            status: Some(Status::Closed),
            ..change()
        };
        assert!(matches!(
            apply(&open(), &close, ANA),
            Err(ApiError::InvalidChange(_))
        ));
        let reviewing = claimed_by_ana();
        assert!(matches!(
            apply(&reviewing, &close, ANA),
            Err(ApiError::InvalidChange(_))
        ));
        let closed = apply(
            &reviewing,
            &AlertChange {
                disposition: Some(Disposition::Fraud),
                ..close
            },
            ANA,
        )
        .unwrap();
        assert_eq!(closed.status, Status::Closed);
        assert!(matches!(
            apply(
                &closed,
                &AlertChange {
                    note: Some("x".into()),
                    ..change()
                },
                ANA
            ),
            Err(ApiError::InvalidChange(_))
        ));
    }

    #[test]
    fn a_card_number_in_a_note_is_kept_masked() {
        let noted = apply(
            &open(),
            &AlertChange {
                note: Some("cardholder read out 4111 1111 1111 1111".into()),
                ..change()
            },
            ANA,
        )
        .unwrap();
        assert_eq!(
            noted.note.as_deref(),
            Some("cardholder read out 4111 11** **** 1111")
        );
    }

    #[test]
    fn releasing_to_the_queue_clears_the_assignee() {
        let reviewing = claimed_by_ana();
        let released = apply(
            &reviewing,
            &AlertChange {
                status: Some(Status::Open),
                ..change()
            },
            ANA,
        )
        .unwrap();
        assert_eq!(released, open());
    }

    #[test]
    fn assignee_and_note_are_checked() {
        let empty = AlertChange {
            assignee: Some(String::new()),
            ..change()
        };
        assert!(matches!(
            apply(&open(), &empty, ANA),
            Err(ApiError::BadRequest(_))
        ));
        let long = AlertChange {
            note: Some("x".repeat(MAX_NOTE_CHARS + 1)),
            ..change()
        };
        assert!(matches!(
            apply(&open(), &long, ANA),
            Err(ApiError::BadRequest(_))
        ));
    }
}
