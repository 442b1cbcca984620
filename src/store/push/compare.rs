//! The comparison of a push's query with the mirror, in one statement: the query's rows are
//! joined to the object table by the key column, and per record the fields that differ
//! become the payload of an update, a tag change or a create; each such request is then
//! looked up in `push_records` and `write_queue` to tell one to queue from one already on
//! its way (or failed a moment ago). Nothing is fetched row by row: 100,000 rows compare in
//! the time the database takes to join them.
//!
//! Runs in a read-only transaction with the push's statement timeout, so the user's query
//! can change nothing whatever it says.

use std::{fmt::Write, time::Duration};

use serde_json::Value;
use sqlx::{types::Json, FromRow};

use super::{read_only_in, QueryFailure};
use crate::{
    push::{Matching, Shape},
    store::{quote_identifier, reporting::literal, Store, StoreError},
    write_back::Current,
};

/// The wait before a request for the same values is queued again after it failed (or was
/// cancelled): doubling with each failure in a row, up to a day, so a value PartnerStack
/// refuses costs a request a day at most, not one a run.
pub const FIRST_RETRY_AFTER: Duration = Duration::from_secs(300);
pub const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// One request a run would queue (or finds on its way).
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct PlannedRequest {
    /// The record, as the key column names it (lower case for an email).
    pub record: String,
    /// The record's key in the mirror; `None` for a create.
    pub object_key: Option<String>,
    /// `update`, `modify_tags` or `create`.
    pub operation: String,
    pub payload: Value,
    /// `{field: {"old": …, "new": …}}` for updates and tags, the payload for creates.
    pub changes: Value,
    /// md5 of every desired value the operation covers (not only those that differ now).
    pub digest: String,
    /// The request's number among this push's requests for the record and operation.
    pub seq: i32,
    /// Failed requests for the same values in a row before this one.
    pub failures: i32,
    /// `queue`, `in_flight` or `held`.
    pub decision: String,
    /// Why it is in flight or held.
    pub reason: Option<String>,
}

impl PlannedRequest {
    /// `push:<name>:<operation>:<record>:<digest>:<seq>`: a run that repeats before the last
    /// one's requests landed finds them by it, and the unique index refuses a second copy.
    pub fn idempotency_key(&self, push: &str) -> String {
        format!("push:{push}:{}:{}:{}:{}", self.operation, self.record, self.digest, self.seq)
    }
}

/// What the comparison found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PushPlan {
    pub rows_read: i64,
    /// Rows with a NULL key.
    pub skipped: i64,
    /// One key the query returned more than once, if any (the run then refuses).
    pub duplicate: Option<String>,
    /// Live rows of the object table (the brake's default is 10% of them).
    pub object_rows: i64,
    /// Rows whose record the mirror does not hold (or holds archived), where nothing is created.
    pub not_found: i64,
    /// Rows compared with a live record.
    pub compared: i64,
    /// Whether the mirror finished its first load of the object (before it has, a missing
    /// record means nothing).
    pub loaded: bool,
    pub requests: Vec<PlannedRequest>,
}

#[derive(FromRow)]
struct Row {
    row_kind: String,
    record: Option<String>,
    object_key: Option<String>,
    operation: Option<String>,
    payload: Option<Json<Value>>,
    changes: Option<Json<Value>>,
    digest: Option<String>,
    seq: Option<i32>,
    failures: Option<i32>,
    decision: Option<String>,
    reason: Option<String>,
    rows_read: Option<i64>,
    skipped: Option<i64>,
    duplicate: Option<String>,
    object_rows: Option<i64>,
    not_found: Option<i64>,
    compared: Option<i64>,
    loaded: Option<bool>,
}

/// The user's query as a subquery. On lines of its own, so a trailing `-- comment` ends there.
pub(super) fn wrapped(query: &str) -> String {
    format!("SELECT * FROM (\n{query}\n) AS src LIMIT 0")
}

impl Store {
    /// Runs the push's query and compares it with the mirror, changing nothing.
    pub async fn plan_push(&self, shape: &Shape, query: &str, timeout: Duration) -> Result<PushPlan, QueryFailure> {
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        read_only_in(&mut tx, self.schema(), timeout).await?;
        let patterns: Vec<String> = shape.tags.clone().unwrap_or_default();
        let rows: Vec<Row> = sqlx::query_as(&statement(shape, query)).bind(&shape.push).bind(&patterns).fetch_all(&mut *tx).await?;
        tx.rollback().await.map_err(StoreError::from)?;
        let mut plan = PushPlan::default();
        for row in rows {
            if row.row_kind == "summary" {
                plan.rows_read = row.rows_read.unwrap_or_default();
                plan.skipped = row.skipped.unwrap_or_default();
                plan.duplicate = row.duplicate;
                plan.object_rows = row.object_rows.unwrap_or_default();
                plan.not_found = row.not_found.unwrap_or_default();
                plan.compared = row.compared.unwrap_or_default();
                plan.loaded = row.loaded.unwrap_or(false);
                continue;
            }
            plan.requests.push(PlannedRequest {
                record: row.record.unwrap_or_default(),
                object_key: row.object_key,
                operation: row.operation.unwrap_or_default(),
                payload: row.payload.map(|p| p.0).unwrap_or_default(),
                changes: row.changes.map(|c| c.0).unwrap_or_default(),
                digest: row.digest.unwrap_or_default(),
                seq: row.seq.unwrap_or(1),
                failures: row.failures.unwrap_or_default(),
                decision: row.decision.unwrap_or_default(),
                reason: row.reason,
            });
        }
        Ok(plan)
    }
}

/// `$1`: the push's name; `$2`: the `LIKE` patterns of the tags it manages.
///
/// The common table expressions are named `_push_*`: the user's query sees them as it would
/// tables of that name, and an unqualified name of theirs must not meet one of ours.
pub fn statement(shape: &Shape, query: &str) -> String {
    let table = quote_identifier(shape.kind.table());
    let key = quote_identifier(&shape.key);
    let (natural, lowered) = match shape.matching {
        Matching::Key => (false, false),
        Matching::Natural { case_insensitive, .. } => (true, case_insensitive),
    };
    let lower = |expr: String| if lowered { format!("lower({expr})") } else { expr };

    // The query's rows, typed as the mirror's columns.
    let mut desired = format!("{} AS k, (src.{key})::text AS k_given", lower(format!("(src.{key})::text")));
    for (i, f) in shape.fields.iter().enumerate() {
        let cast = f.sql_type.map(|t| format!("::{t}")).unwrap_or_default();
        let _ = write!(desired, ", (src.{}){cast} AS f{i}", quote_identifier(&f.name));
    }
    if shape.tags.is_some() {
        desired.push_str(", (src.\"tags\")::text[] AS tags");
    }

    // The mirror's rows, with the current value of each compared field.
    let mut current = String::from("m.key, m.deleted_at, m.synced_at");
    for (i, f) in shape.fields.iter().enumerate() {
        match f.current {
            Some(Current::Column(column)) => {
                let _ = write!(current, ", m.{} AS c{i}", quote_identifier(column));
            }
            Some(Current::RawText(path)) => {
                let _ = write!(current, ", m.raw #>> {} AS c{i}", literal(&format!("{{{}}}", path.join(","))));
            }
            None => {}
        }
    }
    if shape.tags.is_some() {
        current.push_str(", m.tags");
    }
    let mirror = match shape.matching {
        Matching::Key => format!("SELECT m.key AS mk, {current} FROM {table} m"),
        Matching::Natural { field, .. } => {
            let mk = lower(format!("m.{}", quote_identifier(field)));
            // One record per natural key: a live one before an archived one, the newest first.
            format!(
                "SELECT DISTINCT ON (mk) {mk} AS mk, {current} FROM {table} m \
                 WHERE {mk} IN (SELECT k FROM _push_desired) \
                 ORDER BY mk, m.deleted_at IS NULL DESC, m.updated_at DESC NULLS LAST"
            )
        }
    };

    // Per record: the update's payload (only what differs), its changes, and every desired value.
    let compared: Vec<(usize, &crate::push::Field)> = shape.fields.iter().enumerate().filter(|(_, f)| f.current.is_some()).collect();
    let (mut payload, mut changes, mut all) = (Vec::new(), Vec::new(), Vec::new());
    for (i, f) in &compared {
        let name = literal(&f.name);
        let differs = format!("d.f{i} IS DISTINCT FROM m.c{i}");
        payload.push(format!("CASE WHEN {differs} THEN jsonb_build_object({name}, d.f{i}) ELSE '{{}}'::jsonb END"));
        changes.push(format!(
            "CASE WHEN {differs} THEN jsonb_build_object({name}, jsonb_build_object('old', to_jsonb(m.c{i}), 'new', to_jsonb(d.f{i}))) \
             ELSE '{{}}'::jsonb END"
        ));
        all.push(format!("{name}, d.f{i}"));
    }
    let or_empty = |parts: Vec<String>| if parts.is_empty() { "'{}'::jsonb".to_owned() } else { parts.join(" || ") };
    let update_payload = or_empty(payload);
    let update_changes = or_empty(changes);
    let update_desired = format!("jsonb_build_object({})", all.join(", "));

    let managed = |array: &str| format!("ARRAY(SELECT DISTINCT t FROM unnest({array}) AS t WHERE t LIKE ANY ($2) ORDER BY t)");
    let (want_tags, have_tags) = match shape.tags {
        Some(_) => (managed("d.tags"), managed("m.tags")),
        None => ("ARRAY[]::text[]".to_owned(), "ARRAY[]::text[]".to_owned()),
    };

    // A create sends the key as given and every field a create sets.
    let mut create = vec![format!("{}, d.k_given", literal(&shape.key))];
    for (i, f) in shape.fields.iter().enumerate().filter(|(_, f)| f.create) {
        create.push(format!("{}, d.f{i}", literal(&f.name)));
    }
    if shape.create_tags {
        create.push(format!("'tags', to_jsonb({want_tags})"));
    }
    let create_payload = format!("jsonb_build_object({})", create.join(", "));
    let missing = if natural { "'create'" } else { "'not_found'" };

    let update_requests = if compared.is_empty() {
        String::new()
    } else {
        "SELECT record, m_key, 'update' AS operation, update_payload AS payload, update_changes AS changes, \
                md5(update_desired::text) AS digest, m_synced_at \
         FROM _push_rows WHERE state = 'compare' AND update_payload <> '{}'::jsonb \
         UNION ALL "
            .to_owned()
    };
    let tag_requests = if shape.tags.is_none() {
        String::new()
    } else {
        "SELECT record, m_key, 'modify_tags', jsonb_build_object('add', to_jsonb(added), 'remove', to_jsonb(removed)), \
                jsonb_build_object('tags', jsonb_build_object('old', to_jsonb(have_tags), 'new', to_jsonb(want_tags))), \
                md5(to_jsonb(want_tags)::text), m_synced_at \
         FROM (SELECT *, ARRAY(SELECT t FROM unnest(want_tags) AS t EXCEPT SELECT t FROM unnest(have_tags) AS t ORDER BY 1) AS added, \
                         ARRAY(SELECT t FROM unnest(have_tags) AS t EXCEPT SELECT t FROM unnest(want_tags) AS t ORDER BY 1) AS removed \
               FROM _push_rows WHERE state = 'compare') AS tagged \
         WHERE cardinality(added) > 0 OR cardinality(removed) > 0 \
         UNION ALL "
            .to_owned()
    };
    let backoff = format!(
        "least(make_interval(secs => {first} * power(2, least(pr.failures, 20))), make_interval(secs => {longest}))",
        first = FIRST_RETRY_AFTER.as_secs(),
        longest = LONGEST_RETRY_AFTER.as_secs()
    );

    format!(
        "WITH _push_desired AS MATERIALIZED (
    SELECT {desired} FROM (
{query}
    ) AS src
),
_push_mirror AS ({mirror}),
_push_rows AS MATERIALIZED (
    SELECT d.k AS record, m.key AS m_key, m.synced_at AS m_synced_at,
           CASE WHEN m.key IS NULL THEN {missing} WHEN m.deleted_at IS NOT NULL THEN 'not_found' ELSE 'compare' END AS state,
           {update_payload} AS update_payload, {update_changes} AS update_changes, {update_desired} AS update_desired,
           {want_tags} AS want_tags, {have_tags} AS have_tags, {create_payload} AS create_payload
    FROM _push_desired d LEFT JOIN _push_mirror m ON m.mk = d.k
    WHERE d.k IS NOT NULL
),
_push_requests (record, m_key, operation, payload, changes, digest, m_synced_at) AS (
    {update_requests}{tag_requests}
    SELECT record, NULL::text, 'create', create_payload, create_payload, md5(create_payload::text), NULL::timestamptz
    FROM _push_rows WHERE state = 'create'
),
_push_decided AS (
    SELECT r.record, r.m_key, r.operation, r.payload, r.changes, r.digest,
           coalesce(pr.seq, 0) + 1 AS seq,
           CASE WHEN pr.digest = r.digest AND w.status IN ('failed', 'cancelled') THEN pr.failures + 1 ELSE 0 END AS failures,
           CASE
               WHEN pr.digest IS DISTINCT FROM r.digest OR w.id IS NULL THEN 'queue'
               WHEN w.status IN ('pending', 'running') THEN 'in_flight'
               WHEN w.status = 'succeeded' AND r.m_synced_at > w.finished_at THEN 'queue'
               WHEN w.status = 'succeeded' THEN 'held'
               WHEN w.finished_at + {backoff} <= now() THEN 'queue'
               ELSE 'held'
           END AS decision,
           CASE
               WHEN pr.digest IS DISTINCT FROM r.digest OR w.id IS NULL THEN NULL
               WHEN w.status IN ('pending', 'running') THEN format('request %s for these values is %s', w.id, w.status)
               WHEN w.status = 'succeeded' AND r.operation = 'create' THEN format(
                   'request %s created this record; the mirror does not show it yet (the next poll brings it in)', w.id)
               WHEN w.status = 'succeeded' THEN format(
                   'request %s for these values succeeded and the mirror shows other values; sent again once the record changes', w.id)
               ELSE format('request %s for these values %s (%s); tried again from %s UTC', w.id, w.status,
                           coalesce(left(w.last_error, 200), 'no error kept'),
                           to_char((w.finished_at + {backoff}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))
           END AS reason
    FROM _push_requests r
    LEFT JOIN push_records pr ON pr.push = $1 AND pr.record = r.record AND pr.operation = r.operation
    LEFT JOIN write_queue w ON w.id = pr.request_id
)
SELECT 'summary' AS row_kind, NULL::text AS record, NULL::text AS object_key, NULL::text AS operation, NULL::jsonb AS payload,
       NULL::jsonb AS changes, NULL::text AS digest, NULL::int AS seq, NULL::int AS failures, NULL::text AS decision,
       NULL::text AS reason,
       (SELECT count(*) FROM _push_desired) AS rows_read,
       (SELECT count(*) FROM _push_desired WHERE k IS NULL) AS skipped,
       (SELECT k FROM _push_desired WHERE k IS NOT NULL GROUP BY k HAVING count(*) > 1 LIMIT 1) AS duplicate,
       (SELECT count(*) FROM {table} WHERE deleted_at IS NULL) AS object_rows,
       (SELECT count(*) FROM _push_rows WHERE state = 'not_found') AS not_found,
       (SELECT count(*) FROM _push_rows WHERE state = 'compare') AS compared,
       (SELECT backfill_completed_at IS NOT NULL FROM sync_state WHERE object = {object}) AS loaded
UNION ALL
SELECT 'request', record, m_key, operation, payload, changes, digest, seq, failures, decision, reason,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM _push_decided",
        object = literal(shape.kind.table())
    )
}
