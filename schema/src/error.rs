use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A value that breaks the v1 contract, with the field it is about when one is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    field: Option<String>,
    message: String,
}

impl Error {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// An error that no single field can be blamed for (for example, text that is not JSON).
    pub fn whole(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }

    /// The field at fault, as a dotted path (`lat`, `amount_minor`), when one is known.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Builds the error for a failed parse from the path serde reached and its message.
    pub(crate) fn at_path(path: &str, message: &str) -> Self {
        let message = strip_position(message);
        // The root path is "."; a missing or unknown field is reported there, and its message
        // already names the field.
        if path == "." || path.is_empty() {
            Self::whole(message)
        } else {
            Self::new(path, message)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// `serde_json` appends " at line 1 column 17" to its messages; within one NDJSON line the
/// position says little once the field is named, so it is dropped.
pub(crate) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}
