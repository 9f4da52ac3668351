//! HTML forms as the browser sends them (`application/x-www-form-urlencoded`, in a body or a
//! query): every field a string, a field left empty the same as one not sent, and a name that
//! may repeat (the queue's checked alerts).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use chrono::{DateTime, NaiveDateTime, Utc};

use super::page::ConsoleError;
use crate::ApiError;

#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(encoded: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(encoded)
                .filter(|(_, value)| !value.trim().is_empty())
                .map(|(name, value)| (name.into_owned(), value.trim().to_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in the form's order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` parsed by `parse`, or a 400 naming the field.
    pub fn parsed<T, E: std::fmt::Display>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|value| parse(value).map_err(|e| ApiError::BadRequest(format!("{name}: {e}"))))
            .transpose()
    }
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ConsoleError> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|_| ApiError::TooLarge)?;
        Ok(Self::parse(&body))
    }
}

/// A time as a browser's `datetime-local` field sends it (taken as UTC), or RFC 3339.
pub fn moment(value: &str) -> Result<DateTime<Utc>, String> {
    let local = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .into_iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok());
    match local {
        Some(local) => Ok(local.and_utc()),
        None => DateTime::parse_from_rfc3339(value)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| format!("{value:?} is not a time (2026-03-01T10:00)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_absent_and_names_repeat() {
        let form = Fields::parse(b"status=&id=a&id=b+c&min_score=0.5&note=%20x%20");
        assert_eq!(form.get("status"), None);
        assert_eq!(form.all("id").collect::<Vec<_>>(), ["a", "b c"]);
        assert_eq!(form.get("note"), Some("x"));
        assert_eq!(
            form.parsed("min_score", str::parse::<f32>).unwrap(),
            Some(0.5)
        );
        let bad = form.parsed("id", str::parse::<f32>).unwrap_err();
        assert!(bad.to_string().starts_with("id: "), "{bad}");
    }

    #[test]
    fn times_from_a_browser_are_utc() {
        let at = moment("2026-03-01T10:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-03-01T10:00:00+00:00");
        assert_eq!(
            moment("2026-03-01T10:00:00+01:00").unwrap().to_rfc3339(),
            "2026-03-01T09:00:00+00:00"
        );
        assert!(moment("yesterday").is_err());
    }
}
