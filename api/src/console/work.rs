//! What the alert page's and the queue's forms ask of an alert, as the API's change.

use crate::ApiError;
use crate::alerts::{AlertChange, Disposition, Status};

/// What a console form asks of an alert: the action, the version and status it was shown at,
/// and the note or assignee typed.
#[derive(Debug, Default)]
pub struct Asked<'a> {
    pub action: &'a str,
    pub version: i32,
    pub status: Option<&'a str>,
    pub note: Option<&'a str>,
    pub assignee: Option<&'a str>,
}

/// The change `asked`: a verdict closes the alert (claiming it first when it is open).
pub fn change(asked: &Asked<'_>) -> Result<AlertChange, ApiError> {
    let Asked {
        action,
        version,
        status,
        note,
        assignee,
    } = *asked;
    let verdict = |disposition| AlertChange {
        version,
        claim: status == Some("open"),
        status: Some(Status::Closed),
        disposition: Some(disposition),
        note: note.map(str::to_owned),
        ..AlertChange::default()
    };
    Ok(match action {
        "claim" => AlertChange {
            version,
            claim: true,
            ..AlertChange::default()
        },
        "release" => AlertChange {
            version,
            status: Some(Status::Open),
            ..AlertChange::default()
        },
        "assign" => AlertChange {
            version,
            assignee: Some(
                assignee
                    .ok_or_else(|| ApiError::BadRequest("assignee: whom to assign it to".into()))?
                    .to_owned(),
            ),
            ..AlertChange::default()
        },
        "fraud" => verdict(Disposition::Fraud),
        "genuine" => verdict(Disposition::Genuine),
        other => return Err(ApiError::BadRequest(format!("no action {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_on_an_open_alert_claims_it_first() {
        let asked = |action, status| Asked {
            action,
            version: 3,
            status,
            note: Some("called"),
            assignee: None,
        };
        let open = change(&asked("fraud", Some("open"))).unwrap();
        assert!(open.claim);
        assert_eq!(open.disposition, Some(Disposition::Fraud));
        assert_eq!(open.status, Some(Status::Closed));
        let reviewed = change(&asked("genuine", Some("in_review"))).unwrap();
        assert!(!reviewed.claim);
        assert!(change(&asked("delete", None)).is_err());
        assert!(change(&asked("assign", None)).is_err(), "to nobody");
    }
}
