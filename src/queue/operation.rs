//! What each queued operation does at the API, and how to tell whether an ambiguous create
//! (the connection dropped after the request was sent) already happened.

use serde_json::Value;

use crate::{
    object::ObjectKind,
    partnerstack::{ApiClient, ApiError, Collection, ListQuery},
    store::{DealFile, QueuedRequest, Store, StoreError},
    write_back::{self, Operation},
};

/// How far before a request was queued a lost create's record is looked for: slack for the
/// difference between our clock and PartnerStack's.
const CLOCK_SLACK_MS: i64 = 60_000;

/// What an operation brought back for the mirror.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Records to upsert (kind, record), e.g. the updated deal, or the converted customer.
    pub records: Vec<(ObjectKind, Value)>,
    /// A record the API no longer returns after a delete: mark it deleted.
    pub gone: Option<(ObjectKind, String)>,
    /// Deal attachments, content included.
    pub files: Vec<DealFile>,
    /// What goes in `write_queue.result`.
    pub result: Value,
}

/// Why an operation could not run.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("database error")]
    Store(#[from] StoreError),
    #[error("unsupported request: {0}")]
    Unsupported(String),
    /// The API said yes, and the record shows otherwise.
    #[error("{0}")]
    NotApplied(String),
}

/// The identifier the API path wants for a mirror key: customers are addressed by their
/// `customer_key` (your external key); everything else by PartnerStack's `key`.
async fn path_id(store: &Store, kind: ObjectKind, key: &str) -> Result<String, OperationError> {
    if kind != ObjectKind::Customer {
        return Ok(key.to_owned());
    }
    match store.customer_key(key).await? {
        Some(Some(customer_key)) => Ok(customer_key),
        Some(None) => Err(OperationError::Unsupported(format!(
            "customer {key} has no customer_key, and PartnerStack addresses customers by customer_key only"
        ))),
        // Not mirrored (yet): a key the user gave as the customer_key works as is.
        None => Ok(key.to_owned()),
    }
}

fn record(kind: ObjectKind, value: Value) -> Vec<(ObjectKind, Value)> {
    if value.get("key").and_then(Value::as_str).is_some() {
        vec![(kind, value)]
    } else {
        Vec::new()
    }
}

/// What a `modify_tags` request asked for that the partnership's `tags` do not show, if any.
fn tags_not_applied(payload: &Value, partnership: &Value) -> Option<String> {
    let tags: Vec<&str> = partnership.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let listed = |field: &str| payload.get(field).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
    let mut wrong: Vec<String> = listed("add").filter(|t| !tags.contains(t)).map(|t| format!("{t:?} not added")).collect();
    wrong.extend(listed("remove").filter(|t| tags.contains(t)).map(|t| format!("{t:?} not removed")));
    (!wrong.is_empty()).then(|| wrong.join(", "))
}

/// What a record looks like after a write that succeeded.
enum ReadBack {
    Found(Value),
    Gone,
    /// The read failed: the write still counts (sending it again would repeat it); the next
    /// poll mirrors the record.
    Unknown,
}

async fn read_back(api: &ApiClient, kind: ObjectKind, id: &str) -> ReadBack {
    match api.record(kind, id).await {
        Ok(now) => ReadBack::Found(now),
        Err(ApiError::NotFound { .. }) => ReadBack::Gone,
        Err(error) => {
            tracing::warn!(error = %crate::telemetry::error_chain(&error), "reading a record back after a write failed; the next poll will mirror it");
            ReadBack::Unknown
        }
    }
}

/// Runs one request against the API. Each write is sent once per attempt: the queue, not the
/// client, retries it (durably, with the attempt counted in `write_queue.attempts`). Reads
/// that follow a write may be retried by the client.
pub async fn execute(api: &ApiClient, store: &Store, request: &QueuedRequest) -> Result<Outcome, OperationError> {
    let kind = request.kind;
    let key = request.object_key.as_deref().unwrap_or_default();
    let payload = &request.payload;
    match request.operation {
        Operation::Create => {
            let created = api.create(kind, payload).await?;
            Ok(Outcome { records: record(kind, created.clone()), result: created, ..Outcome::default() })
        }
        Operation::Update => {
            let id = path_id(store, kind, key).await?;
            let updated = api.update(kind, &id, payload).await?;
            Ok(Outcome { records: record(kind, updated.clone()), result: updated, ..Outcome::default() })
        }
        Operation::Delete => {
            let id = path_id(store, kind, key).await?;
            let answer = match api.archive(kind, &id).await {
                Ok(answer) => answer,
                // An earlier attempt got no answer or a 5xx, and the record is gone now: the
                // end state asked for. (A first attempt's 404 is a wrong key, and fails.)
                Err(ApiError::NotFound { .. }) if request.attempts > 1 => {
                    return Ok(Outcome { gone: Some((kind, key.to_owned())), ..Outcome::default() });
                }
                Err(e) => return Err(e.into()),
            };
            // DELETE archives (or deletes): read the record back to mirror what it is now.
            Ok(match read_back(api, kind, &id).await {
                ReadBack::Found(now) => Outcome { records: record(kind, now), result: answer, ..Outcome::default() },
                ReadBack::Gone => Outcome { gone: Some((kind, key.to_owned())), result: answer, ..Outcome::default() },
                ReadBack::Unknown => Outcome { result: answer, ..Outcome::default() },
            })
        }
        Operation::ModifyTags => {
            // Question 6 of docs/correctness.md: the body is undocumented; we send `{"add": [...], "remove": [...]}` as
            // queued, then read the partnership back whatever the answer's shape.
            // The read-back also checks that the change happened: an API expecting another body
            // shape could answer 200 and change nothing, and that must not pass for success.
            let answer = api.modify_tags(key, payload).await?;
            match read_back(api, kind, key).await {
                ReadBack::Found(now) => {
                    if let Some(missing) = tags_not_applied(payload, &now) {
                        return Err(OperationError::NotApplied(format!(
                            "PartnerStack accepted the tag change but the partnership's tags do not show it ({missing}); \
                             the body of PATCH /partnerships/{{key}}/tags is undocumented (Question 6 of docs/correctness.md) and this API may expect \
                             another shape"
                        )));
                    }
                    Ok(Outcome { records: record(kind, now.clone()), result: now, ..Outcome::default() })
                }
                ReadBack::Gone | ReadBack::Unknown => Ok(Outcome { result: answer, ..Outcome::default() }),
            }
        }
        Operation::Convert => {
            let customer = api.convert(kind, key, payload).await?;
            let mut records = record(ObjectKind::Customer, customer.clone());
            if let ReadBack::Found(source) = read_back(api, kind, key).await {
                records.extend(record(kind, source));
            }
            Ok(Outcome { records, result: customer, ..Outcome::default() })
        }
        Operation::Refresh => {
            let id = path_id(store, kind, key).await?;
            // A 404 fails the request and leaves the row alone: a record can be too new to read
            // back for minutes, so deciding deletions is the key scans' job, behind their brake.
            let now = api.record(kind, &id).await?;
            Ok(Outcome { records: record(kind, now.clone()), result: now, ..Outcome::default() })
        }
        Operation::FetchAttachments => {
            let files = api.deal_files(key).await?;
            let mut fetched = Vec::new();
            for file in &files {
                let Some(file_key) = file.get("key").and_then(Value::as_str) else { continue };
                let (content, content_type) = match api.deal_file_link(key, file_key).await? {
                    Some(url) => {
                        let (bytes, ty) = api.download(&url).await?;
                        (Some(bytes), ty)
                    }
                    None => (None, None),
                };
                fetched.push(DealFile { deal_key: key.to_owned(), file: file.clone(), content, content_type });
            }
            Ok(Outcome { files: fetched, result: serde_json::json!({"deal_files": files}), ..Outcome::default() })
        }
    }
}

/// What identifies the customer a conversion creates: the payload's `customer_key`, which
/// for a lead defaults to the lead's `external_key` (research notes §2.5).
pub async fn conversion_lookup(store: &Store, kind: ObjectKind, key: Option<&str>, payload: &Value) -> Result<Value, StoreError> {
    if payload.get("customer_key").and_then(Value::as_str).is_some_and(|k| !k.is_empty()) || kind != ObjectKind::Lead {
        return Ok(payload.clone());
    }
    Ok(match store.lead_external_key(key.unwrap_or_default()).await? {
        Some(external_key) => serde_json::json!({"customer_key": external_key}),
        None => payload.clone(),
    })
}

/// The natural-key fields a create's payload carries, as `(field, value)`, most specific
/// first: what identifies the record the create would make.
fn natural_keys(kind: ObjectKind, payload: &Value) -> Vec<(&'static str, String)> {
    write_back::natural_keys(kind)
        .iter()
        .filter_map(|f| payload.get(*f).and_then(Value::as_str).filter(|v| !v.is_empty()).map(|v| (*f, v.to_owned())))
        .collect()
}

/// After a create ended without an answer: the record, if the API has it under a natural
/// key the request carried. `Ok(None)`: not found (yet). `Err(Unsupported)`: this request
/// carries no natural key to look for, so resending could duplicate the record.
///
/// First a single GET by the identifier, where the API has one; then, because which
/// identifiers a path accepts is not documented for every object (docs/correctness.md), the records
/// created since the request was queued, from the list.
pub async fn find_created(api: &ApiClient, kind: ObjectKind, payload: &Value, since_ms: i64) -> Result<Option<Value>, OperationError> {
    let wanted = natural_keys(kind, payload);
    if wanted.is_empty() {
        let keys: Vec<String> = write_back::natural_keys(kind).iter().map(|f| format!("`{f}`")).collect();
        return Err(OperationError::Unsupported(format!(
            "a {} create without a natural key ({}) cannot be checked after a lost answer",
            kind.singular(),
            if keys.is_empty() { "none exists for this object".to_owned() } else { keys.join(" or ") }
        )));
    }
    let matches = |record: &Value| wanted.iter().any(|(field, value)| record.get(*field).and_then(Value::as_str) == Some(value.as_str()));
    if kind != ObjectKind::Transaction {
        for (_, value) in &wanted {
            match api.record(kind, value).await {
                Ok(found) if matches(&found) => return Ok(Some(found)),
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let query = ListQuery { min_created: Some(since_ms - CLOCK_SLACK_MS), ..Default::default() };
    let mut pages = std::pin::pin!(api.list(&Collection::Objects(kind), query));
    while let Some(page) = futures::TryStreamExt::try_next(&mut pages).await? {
        for raw in &page.items {
            if let Ok(record) = serde_json::from_str::<Value>(raw.get()) {
                if matches(&record) {
                    return Ok(Some(record));
                }
            }
        }
    }
    Ok(None)
}
