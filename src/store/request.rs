//! What a queued write-back request asks for, read once when it is claimed: its operation
//! and object type become enums there, so the workers match names the compiler checks and
//! never compare strings.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{types::Json, FromRow};

use crate::{object::ObjectKind, write_back::Operation};

/// A claimed request, ready to carry out.
#[derive(Clone, Debug)]
pub struct QueuedRequest {
    pub id: i64,
    pub operation: Operation,
    pub kind: ObjectKind,
    pub object_key: Option<String>,
    pub payload: Value,
    pub attempts: i32,
    pub max_attempts: Option<i32>,
    pub created_at: DateTime<Utc>,
    /// Seconds since a previous attempt of this create or convert may have happened at the
    /// API (it ended without an answer, or its worker stopped while holding it); `None`:
    /// every earlier attempt had a definite answer. Measured by the database's clock.
    pub outcome_unknown_for: Option<f64>,
}

/// What a claim took.
#[derive(Clone, Debug)]
pub enum Claim {
    Request(QueuedRequest),
    /// A request naming an operation or object type this version does not know (the INSERT
    /// trigger forbids it, but a later migration could admit one before this binary is
    /// upgraded): it is claimed like any other, and failed with `why`.
    Unknown {
        id: i64,
        operation: String,
        object_type: String,
        object_key: Option<String>,
        why: String,
    },
}

impl Claim {
    /// The claimed request's `write_queue.id`.
    pub fn id(&self) -> i64 {
        match self {
            Claim::Request(request) => request.id,
            Claim::Unknown { id, .. } => *id,
        }
    }
}

/// The claimed row as stored.
#[derive(FromRow)]
pub(super) struct ClaimedRow {
    id: i64,
    operation: String,
    object_type: String,
    object_key: Option<String>,
    payload: Json<Value>,
    attempts: i32,
    max_attempts: Option<i32>,
    created_at: DateTime<Utc>,
    outcome_unknown_for: Option<f64>,
}

impl From<ClaimedRow> for Claim {
    /// Parses the row's names; an unknown object type is named before an unknown operation.
    fn from(row: ClaimedRow) -> Claim {
        let parsed = match (row.object_type.parse::<ObjectKind>(), row.operation.parse::<Operation>()) {
            (Err(_), _) => Err(format!("unknown object_type {}", row.object_type)),
            (Ok(_), Err(_)) => Err(format!("unsupported request: {}", row.operation)),
            (Ok(kind), Ok(operation)) => Ok((kind, operation)),
        };
        match parsed {
            Ok((kind, operation)) => Claim::Request(QueuedRequest {
                id: row.id,
                operation,
                kind,
                object_key: row.object_key,
                payload: row.payload.0,
                attempts: row.attempts,
                max_attempts: row.max_attempts,
                created_at: row.created_at,
                outcome_unknown_for: row.outcome_unknown_for,
            }),
            Err(why) => {
                Claim::Unknown { id: row.id, operation: row.operation, object_type: row.object_type, object_key: row.object_key, why }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_creates_and_conversions_make_new_records() {
        let creating: Vec<Operation> = Operation::ALL.iter().copied().filter(|o| o.creates()).collect();
        assert_eq!(creating, [Operation::Create, Operation::Convert]);
    }
}
