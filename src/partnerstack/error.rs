//! API failures, classified once, at the boundary.

use std::time::Duration;

/// What a caller should do about an [`ApiError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Worth another attempt later: transport trouble, timeouts, 429, 5xx, a cut-off body.
    Retryable,
    /// Nothing will work until a person acts: bad credentials, bad configuration.
    Fatal,
    /// This request will not work; others may: 404, validation errors.
    Skip,
}

/// A failed API call. Messages never contain the credentials.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("PartnerStack rejected the credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("not found (404): {message}")]
    NotFound { message: String },
    #[error("rate limited (429){}", retry_after.map(|d| format!(", Retry-After {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("PartnerStack server error ({status}): {message}")]
    Server { status: u16, message: String },
    #[error("PartnerStack rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("request timed out")]
    Timeout(#[source] reqwest::Error),
    #[error("connection failed or was dropped")]
    Transport(#[source] reqwest::Error),
    #[error("the response is not the expected JSON (starts with {snippet:?})")]
    Malformed {
        #[source]
        source: serde_json::Error,
        snippet: String,
    },
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ApiError {
    /// The one place that decides what each failure means.
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Timeout(_)
            | ApiError::Transport(_)
            | ApiError::RateLimited { .. }
            | ApiError::Server { .. }
            | ApiError::Malformed { .. } => ErrorClass::Retryable,
            ApiError::Unauthorized { .. } | ApiError::Config(_) => ErrorClass::Fatal,
            ApiError::NotFound { .. } | ApiError::Rejected { .. } => ErrorClass::Skip,
        }
    }

    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Unauthorized { status, .. } | ApiError::Server { status, .. } | ApiError::Rejected { status, .. } => Some(*status),
            ApiError::NotFound { .. } => Some(404),
            ApiError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The wait the API asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Builds the error for a non-2xx answer from its status and body.
    pub(crate) fn from_status(status: u16, body: &[u8], retry_after: Option<Duration>) -> ApiError {
        let message = message_of(body).unwrap_or_else(|| {
            reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("no message").to_owned()
        });
        match status {
            401 | 403 => ApiError::Unauthorized { status, message },
            404 => ApiError::NotFound { message },
            429 => ApiError::RateLimited { retry_after },
            500..=599 => ApiError::Server { status, message },
            _ => ApiError::Rejected { status, message },
        }
    }
}

/// The `message` of a `{"message": …, "status": …}` body, shortened.
fn message_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = match value.get("message")? {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(shorten(&message, 500))
}

pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let cut = (0..=max).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_once() {
        assert_eq!(ApiError::from_status(401, b"{}", None).class(), ErrorClass::Fatal);
        assert_eq!(ApiError::from_status(403, b"{}", None).class(), ErrorClass::Fatal);
        assert_eq!(ApiError::from_status(404, b"{}", None).class(), ErrorClass::Skip);
        assert_eq!(ApiError::from_status(400, b"{}", None).class(), ErrorClass::Skip);
        assert_eq!(ApiError::from_status(429, b"{}", None).class(), ErrorClass::Retryable);
        assert_eq!(ApiError::from_status(503, b"{}", None).class(), ErrorClass::Retryable);
    }

    #[test]
    fn the_api_message_is_kept() {
        let e = ApiError::from_status(400, br#"{"message": "'target_type' is a required property", "status": 400}"#, None);
        assert!(e.to_string().contains("'target_type' is a required property"), "{e}");
        assert_eq!(e.status(), Some(400));
    }
}
