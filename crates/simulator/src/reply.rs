//! An answer before it becomes an HTTP response. Shared by the endpoints that read
//! (`api`), write (`writes`) and serve attachments (`files`), and by the server's own
//! refusals (faults, rate limit, auth), so none of them needs another to answer.

use serde_json::{json, Value};

use super::schema::WriteError;

/// An answer before it becomes an HTTP response.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    /// A list page was computed (counts towards `after_pages` hooks).
    pub list_page: bool,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply { status, body: serde_json::to_vec(body).expect("JSON values serialize"), headers: Vec::new(), list_page: false }
    }

    /// The API's error body: `{"message", "status"}` with the same HTTP status.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({"message": message, "status": status}))
    }
}

impl From<WriteError> for Reply {
    fn from(e: WriteError) -> Reply {
        Reply::error(e.status(), &e.to_string())
    }
}
