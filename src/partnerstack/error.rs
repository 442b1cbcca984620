//! API failures, classified once, at the boundary.
//!
//! Every caller (the sync, the write-back queue, `doctor`) asks [`ApiError::class`] what a
//! failure means instead of matching statuses itself, so "is a 409 worth a retry?" has one
//! answer in the whole program.

use std::time::Duration;

/// What a caller should do about an [`ApiError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Worth another attempt later: transport trouble, timeouts, 429, 5xx, a cut-off body.
    Retryable,
    /// Nothing will work until a person acts: bad credentials, bad configuration.
    Fatal,
    /// This request will not work; others may: 404, validation errors, a broken listing.
    Skip,
}

/// A failed API call. Neither the messages nor `Debug` ever contain the credentials: the
/// key travels only in the `Authorization` header, which no error keeps.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("PartnerStack rejected the credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// A 403 on an endpoint this key has been refused before while the API accepted it
    /// elsewhere: the key may not use that endpoint, which says nothing about the keys.
    #[error("this key may not use {endpoint} (403, though the API accepts it elsewhere): {message}")]
    Forbidden { endpoint: String, message: String },
    #[error("not found (404): {message}")]
    NotFound { message: String },
    #[error("rate limited (429){}", wait_hint(*retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// `retry_after` is kept because a 503 may say when to come back, like a 429.
    #[error("PartnerStack server error ({status}): {message}{}", wait_hint(*retry_after))]
    Server { status: u16, message: String, retry_after: Option<Duration> },
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
    /// The API said there is more but gave no usable cursor: following it would loop or stop
    /// early without anyone noticing, so the listing ends with this error instead.
    #[error("listing {path} cannot continue: {reason}")]
    Pagination { path: String, reason: &'static str },
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
            ApiError::Forbidden { .. } | ApiError::NotFound { .. } | ApiError::Rejected { .. } | ApiError::Pagination { .. } => {
                ErrorClass::Skip
            }
        }
    }

    /// No connection could be made at all (refused, unknown host): the API is down or out of
    /// reach for every path, not only for the one asked.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Transport(e) if e.is_connect())
    }

    /// The HTTP status, when the API answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Unauthorized { status, .. } | ApiError::Server { status, .. } | ApiError::Rejected { status, .. } => Some(*status),
            ApiError::Forbidden { .. } => Some(403),
            ApiError::NotFound { .. } => Some(404),
            ApiError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// Whether a write that ended with this error may still have taken effect: no answer
    /// came (timeout, dropped connection), the answer was a success we could not read, or a
    /// 500/502/504, which a server or gateway may give after the work was done. A 429 or 503
    /// says the request was turned away.
    pub fn may_have_been_applied(&self) -> bool {
        match self {
            ApiError::Timeout(_) | ApiError::Transport(_) | ApiError::Malformed { .. } => true,
            ApiError::Server { status, .. } => matches!(status, 500 | 502 | 504),
            _ => false,
        }
    }

    /// The wait the API asked for (`Retry-After` on a 429 or 5xx), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } | ApiError::Server { retry_after, .. } => *retry_after,
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
            500..=599 => ApiError::Server { status, message, retry_after },
            _ => ApiError::Rejected { status, message },
        }
    }

    /// A body that is not the JSON we expected; the start of it helps whoever reads the log.
    pub(crate) fn malformed(source: serde_json::Error, body: &[u8]) -> ApiError {
        ApiError::Malformed { source, snippet: shorten(&String::from_utf8_lossy(body), 80) }
    }

    /// Sorts a `reqwest` failure: a timeout is reported as such, everything else (refused
    /// connection, dropped connection, body cut short) is transport trouble.
    pub(crate) fn from_reqwest(e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout(e)
        } else {
            ApiError::Transport(e)
        }
    }
}

fn wait_hint(retry_after: Option<Duration>) -> String {
    retry_after.map(|d| format!(", Retry-After {}s", d.as_secs())).unwrap_or_default()
}

/// The `message` of a `{"message": …, "status": …}` body, shortened: validation messages
/// are what a person needs to fix a queued write, but a runaway body must not flood a log.
fn message_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = match value.get("message")? {
        serde_json::Value::String(s) if s.trim().is_empty() => return None,
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => return None,
        other => other.to_string(),
    };
    Some(shorten(&message, 500))
}

/// At most `max` bytes of `text`, cut on a character boundary, with an ellipsis when cut.
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
        let class = |status| ApiError::from_status(status, b"{}", None).class();
        assert_eq!(class(401), ErrorClass::Fatal);
        assert_eq!(class(403), ErrorClass::Fatal);
        assert_eq!(class(404), ErrorClass::Skip);
        assert_eq!(class(400), ErrorClass::Skip);
        assert_eq!(class(409), ErrorClass::Skip);
        assert_eq!(class(429), ErrorClass::Retryable);
        assert_eq!(class(500), ErrorClass::Retryable);
        assert_eq!(class(503), ErrorClass::Retryable);
    }

    #[test]
    fn the_api_message_is_kept() {
        let e = ApiError::from_status(400, br#"{"message": "'target_type' is a required property", "status": 400}"#, None);
        assert!(e.to_string().contains("'target_type' is a required property"), "{e}");
        assert_eq!(e.status(), Some(400));
    }

    #[test]
    fn without_a_message_the_status_text_is_used() {
        assert!(ApiError::from_status(502, b"<html>Bad gateway</html>", None).to_string().contains("Bad Gateway"));
        assert!(ApiError::from_status(400, br#"{"message": "", "status": 400}"#, None).to_string().contains("Bad Request"));
    }

    #[test]
    fn a_long_message_is_shortened() {
        let body = serde_json::json!({"message": "x".repeat(5000)}).to_string();
        let ApiError::Rejected { message, .. } = ApiError::from_status(422, body.as_bytes(), None) else { panic!("422 is a rejection") };
        assert!(message.len() <= 504, "{}", message.len());
    }

    #[test]
    fn shortening_never_splits_a_character() {
        assert_eq!(shorten("ééé", 3), "é…");
        assert_eq!(shorten("abc", 3), "abc");
    }

    #[test]
    fn retry_after_is_kept_for_429_and_503() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(ApiError::from_status(429, b"", wait).retry_after(), wait);
        assert_eq!(ApiError::from_status(503, b"", wait).retry_after(), wait);
        assert_eq!(ApiError::from_status(400, b"", wait).retry_after(), None);
    }

    #[test]
    fn only_answers_that_may_follow_the_work_leave_a_write_in_doubt() {
        let applied = |status| ApiError::from_status(status, b"", None).may_have_been_applied();
        assert!(applied(500) && applied(502) && applied(504));
        assert!(!applied(503) && !applied(429) && !applied(400) && !applied(404));
        let unreadable = ApiError::Malformed { source: serde_json::from_str::<u8>("x").unwrap_err(), snippet: "{\"da".into() };
        assert!(unreadable.may_have_been_applied(), "a 2xx we could not read was a success");
    }
}
