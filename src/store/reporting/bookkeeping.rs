//! What the mirror's own tables hold, column by column, for their `COMMENT ON`s.
//!
//! A migration that adds a table or a column adds its entry here: the integration test
//! `reporting::every_table_view_and_column_of_the_mirror_has_a_comment` reads every table in
//! the schema from the catalog and names whatever has no comment.

use super::{ident, Script};

/// One bookkeeping table: its name, what a row is, and each column.
pub struct TableDoc {
    pub name: &'static str,
    pub about: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
}

const OBJECT: (&str, &str) = ("object", "The object table this row is about (`deals`, `customers`, …; the names of `sync.objects`).");

pub const BOOKKEEPING: &[TableDoc] = &[
    TableDoc {
        name: "events",
        about: "One row per change the mirror saw, written in the same transaction as the row it changed. Read in commit order \
                with WHERE id > $last ORDER BY id (or next_events/commit_events); pruned after `events.retain`.",
        columns: &[
            ("id", "Position in commit order: a reader after a given id never misses an event that commits later."),
            ("event_type", "`<object_type>.<what>`: `deal.created`, `deal.updated`, `deal.stage_updated`, `customer.deleted`, …"),
            ("object_type", "The record's type, singular: `deal`, `customer`, `partner_team`, …"),
            ("object_key", "PartnerStack's key of the record (`<table>.key`, e.g. `deals.key` for `object_type = 'deal'`)."),
            ("occurred_at", "When it happened: the record's `updated_at`, or the scan time for a deletion."),
            ("detected_at", "When the mirror wrote the event."),
            (
                "source",
                "How the mirror saw it: `backfill` (the first load), `poll`, `reconcile` (a key scan), `write_back`, or `webhook` \
                 (a read a PartnerStack webhook triggered, and training completions).",
            ),
            ("changes", "{field: {\"old\": …, \"new\": …}} for every changed field; tag events add `tags_added` and `tags_removed`."),
            ("data", "The record after the change (before it, for a deletion), as the API returned it."),
        ],
    },
    TableDoc {
        name: "sync_state",
        about: "One row per object: where incremental reading stands and how the last passes went.",
        columns: &[
            OBJECT,
            ("cursor", "Every change at or before this instant has been read (NULL until the first backfill completes)."),
            ("window_start", "The start of the window being read, while a pass runs."),
            ("window_end", "The end of the window being read, while a pass runs."),
            ("backfill_completed_at", "When the first complete load finished."),
            ("last_rescan_at", "When a complete read (backfill, rescan or key scan) last finished."),
            ("last_reconcile_at", "When a complete key scan (finding deleted records) last finished."),
            ("last_success_at", "When a pass of this object last succeeded."),
            ("last_error", "Why the last failed pass failed."),
            ("last_error_at", "When a pass last failed."),
            ("updated_at", "When this row last changed."),
            (
                "updated_filter",
                "Transactions and rewards: whether the daemon's probe (at start and daily) found `min_updated` honoured on \
                 their list (`honoured`, `ignored`, `undetermined`); honoured, they are polled by updated windows and leave \
                 the hourly rescan.",
            ),
            ("updated_filter_since", "When the probe first gave its current answer."),
            ("updated_filter_probed_at", "When the probe last ran."),
        ],
    },
    TableDoc {
        name: "partner_team_reads",
        about: "When each partner team's members were last read. A team is read again when one of its partnerships was \
                written after that or a webhook named it; the daily key scan reads every team.",
        columns: &[
            ("team_key", "PartnerStack's key of the team (`partnerships.team_key`)."),
            ("read_at", "The database's time just before the read began: a partnership written later makes the team due."),
        ],
    },
    TableDoc {
        name: "api_requests",
        about: "PartnerStack API requests by minute and purpose, added up by every daemon and command on this mirror \
                (`status` shows the last hour and day). Pruned after `sync.retain_runs`.",
        columns: &[
            ("minute", "The minute the requests were added up in (a daemon adds its own every minute)."),
            (
                "purpose",
                "Why they were sent: `poll`, `rescan`, `key_scan`, `team`, `write_back`, `webhook`, `probe` or `backfill` \
                 (the `purpose` label of partnerstack_mirror_api_requests_total).",
            ),
            ("requests", "How many, retries included."),
        ],
    },
    TableDoc {
        name: "sync_runs",
        about: "One row per pass of one object: what it read and wrote, and how it ended. Pruned after `sync.retain_runs`.",
        columns: &[
            ("id", "The pass's id (in logs as `run_id`)."),
            OBJECT,
            ("kind", "`backfill`, `poll`, `rescan` or `reconcile`."),
            ("started_at", "When the pass started."),
            ("finished_at", "When it finished (NULL while running, or if its process died)."),
            ("window_start", "The start of the window it read."),
            ("window_end", "The end of the window it read."),
            ("pages", "API pages read."),
            ("records_read", "Records the API returned."),
            ("rows_written", "Rows inserted or changed."),
            ("events_written", "Events written."),
            ("requests", "API requests sent."),
            ("outcome", "`running`, `succeeded` or `failed`."),
            ("error", "Why it failed."),
            ("holder", "The daemon that ran it (`daemons.holder`)."),
        ],
    },
    TableDoc {
        name: "quarantine",
        about: "Records the API returned that could not be stored, with the reason; a later clean copy removes its row.",
        columns: &[
            ("id", "Row id."),
            OBJECT,
            ("key", "The record's key, when it had a readable one."),
            ("fingerprint", "The key, or a hash of the raw text: one row per bad record."),
            ("raw", "The record's text as received (cut at 1 MiB)."),
            ("error", "Why it could not be stored, naming the field."),
            ("first_seen_at", "When it was first seen."),
            ("last_seen_at", "When it was last seen."),
            ("times_seen", "How many times it was seen."),
        ],
    },
    TableDoc {
        name: "sync_leases",
        about: "Which daemon syncs which object (or runs which push): a lease with a fencing epoch that every write of a pass \
                checks.",
        columns: &[
            ("object", "The object table the lease is for (`deals`, `customers`, …), or `push:<name>` for the runs of a push."),
            ("holder", "The daemon holding the lease (`daemons.holder`)."),
            ("epoch", "Grows with every change of holder; a write under an older epoch is refused."),
            ("acquired_at", "When the holder took the lease."),
            ("expires_at", "When the lease lapses unless renewed; another daemon may take it then."),
        ],
    },
    TableDoc {
        name: "write_queue",
        about: "Changes to carry to PartnerStack: INSERT a row (operation, object_type, object_key, payload) and the daemon's \
                workers send it once, in id order per record; the answer lands in the mirror and in `result`.",
        columns: &[
            ("id", "The request's id; requests for one record run in id order."),
            ("operation", "`create`, `update`, `delete`, `modify_tags`, `convert`, `refresh` or `fetch_attachments`."),
            ("object_type", "The record's type, singular: `deal`, `lead`, `customer`, `partnership`, …"),
            ("object_key", "The record's key in the mirror (`<table>.key`); NULL for a create."),
            ("payload", "The fields to send, as a JSON object."),
            ("idempotency_key", "Optional: a second INSERT with the same key is refused, so a retried script queues once."),
            ("status", "`pending`, `running`, `succeeded`, `failed` or `cancelled` (only a pending request can be cancelled)."),
            ("attempts", "Attempts so far."),
            ("max_attempts", "Attempts before `failed`; NULL: the daemon's `queue.max_attempts`."),
            ("run_after", "Not before this time (retries back off)."),
            ("locked_until", "While running: when the worker's claim lapses."),
            ("locked_by", "While running: the daemon holding it."),
            ("last_error", "The last attempt's error."),
            ("http_status", "The last answer's HTTP status."),
            ("result", "The API's answer (the record as it now is) once succeeded."),
            ("created_at", "When the request was queued."),
            ("updated_at", "When the row last changed."),
            ("finished_at", "When it succeeded, failed or was cancelled."),
            ("outcome_unknown_since", "Set while an attempt may have reached the API without its answer reaching the mirror."),
            ("touches", "The records the request touches (set by a trigger): requests sharing one run in id order."),
        ],
    },
    TableDoc {
        name: "deal_files",
        about: "Deal attachments fetched by `fetch_attachments` requests.",
        columns: &[
            ("deal_key", "PartnerStack's key of the deal (`deals.key`)."),
            ("file_key", "PartnerStack's key of the file."),
            ("name", "The file's name."),
            ("field_key", "The deal form field the file was uploaded to."),
            ("content", "The file's bytes."),
            ("content_type", "Its media type."),
            ("size", "Its size in bytes."),
            ("fetched_at", "When it was fetched."),
        ],
    },
    TableDoc {
        name: "daemons",
        about: "One row per running daemon, kept current every few seconds and removed on a clean stop (what `status` shows).",
        columns: &[
            ("holder", "The name it holds leases under: host/pid/random."),
            ("version", "Its partnerstack-mirror version."),
            ("started_at", "When it started."),
            ("seen_at", "When it last reported; two minutes of silence mean it stopped without cleaning up."),
            ("status", "What it does or waits for (systemd's STATUS=)."),
            ("problem", "What keeps it from working, e.g. rejected credentials."),
        ],
    },
    TableDoc {
        name: "event_consumers",
        about: "Named readers of `events` and how far each has read: SELECT * FROM next_events('crm', 100); then \
                SELECT commit_events('crm', <last id handled>).",
        columns: &[
            ("name", "The consumer's name."),
            ("position", "Every event up to this `events.id` is handled."),
            ("created_at", "When the consumer first committed."),
            ("updated_at", "Its last commit (an inactive consumer stops protecting events from retention)."),
        ],
    },
    TableDoc {
        name: "deliveries",
        about: "One row per configured webhook delivery (`[[delivery]]`): how far it has sent the events.",
        columns: &[
            ("name", "The delivery's name in the configuration."),
            ("position", "Every event up to this `events.id` is done for it (sent, dead-lettered, or not matching)."),
            ("state", "`active`, `holding` or `disabled`."),
            ("state_reason", "Why holding or disabled (e.g. the endpoint answered 410 Gone)."),
            ("holder", "The daemon delivering it (`daemons.holder`)."),
            ("epoch", "Grows with every change of holder (fencing)."),
            ("lease_expires_at", "When the holder's lease lapses unless renewed."),
            ("last_sent_at", "When an event was last sent."),
            ("last_error", "The last failure."),
            ("last_error_at", "When it failed."),
            ("created_at", "When the delivery was first seen configured."),
            ("updated_at", "Its last position commit."),
        ],
    },
    TableDoc {
        name: "delivery_dead_letters",
        about: "Events a delivery gave up on, with the body sent, so they can be sent again (`delivery retry`).",
        columns: &[
            ("delivery", "The delivery (`deliveries.name`)."),
            ("event_id", "The event (`events.id`; it may since have been pruned)."),
            ("event_type", "The event's type."),
            ("object_type", "The event's object type."),
            ("object_key", "The event's object key."),
            ("body", "The JSON body that was sent."),
            ("attempts", "Attempts made."),
            ("last_error", "The last attempt's error."),
            ("http_status", "The last answer's HTTP status."),
            ("dead_at", "When the delivery gave up."),
            ("requeued_at", "When `delivery retry` queued it again."),
        ],
    },
    TableDoc {
        name: "prunes",
        about: "What retention last pruned, per table (`status` shows it).",
        columns: &[
            ("target", "`events`, `write_queue` or `sync_runs`."),
            ("last_run_at", "When retention last ran for it."),
            ("last_removed", "Rows removed then."),
            ("total_removed", "Rows removed since the first run."),
            ("note", "Why fewer went than age alone allows (a consumer or delivery not past them), or none."),
        ],
    },
    TableDoc {
        name: "webhook_inbox",
        about: "Every webhook PartnerStack sent that the daemon accepted, kept before it was answered, then handled: object webhooks \
                trigger a read of that object type, training completions become `training_completions` rows.",
        columns: &[
            ("id", "Arrival order."),
            ("received_at", "When the daemon accepted it."),
            ("event", "The event name in the body (`deal.updated`, `partnership_created`, `training.course_completed`), if any."),
            ("payload", "The body, verbatim, as text (`payload::jsonb` reads it as JSON)."),
            (
                "outcome",
                "`pending` (not handled yet), `read_requested` (its object type was read), `recorded` (a training completion), \
                 `ignored` (an event the mirror does not use, or an object not mirrored) or `quarantined`.",
            ),
            ("processed_at", "When it was handled."),
            ("error", "Why it was ignored or quarantined."),
        ],
    },
    TableDoc {
        name: "training_completions",
        about: "One row per training course or learning path a partner completed (SAP Litmos, reported by PartnerStack only as \
                webhooks), however often it was delivered.",
        columns: &[
            (
                "completion_key",
                "What identifies the completion (a hash of its kind, course or path, partner and moment); also the \
              `object_key` of its `training.*_completed` event.",
            ),
            ("kind", "`course` or `learning_path`."),
            ("item_id", "The course's or learning path's id, as PartnerStack sent it."),
            ("item_name", "The course's or learning path's name."),
            ("partnership_key", "PartnerStack's key of the partnership that completed it; joins `partnerships.key`."),
            ("partner_key", "The partner's own key; joins `partnerships.partner_key`."),
            ("partner_email", "The partner's email, as sent."),
            ("company_key", "The company key PartnerStack sent."),
            ("completed_at", "When the training was completed."),
            ("payload", "The first delivery's body, verbatim."),
            ("received_at", "When the first delivery was received."),
            ("deliveries", "How many times PartnerStack delivered it."),
        ],
    },
    TableDoc {
        name: "api_budget",
        about: "The request rate each PartnerStack API key was found to allow (from its 429s), so a restarted daemon starts \
                from it instead of finding it again. Written every minute and at stop; several daemons on one key each learn \
                their share and the last to write wins.",
        columns: &[
            ("api_url", "The API's base URL."),
            ("public_key", "The public API key (never the private one)."),
            ("requests_per_second", "The rate the client allowed itself when it wrote the row."),
            ("learned_at", "When it was written."),
            (
                "found_at_429",
                "Whether a 429 told that rate: then the next start goes on from it by additive increase; otherwise it is only \
                 a floor, and the next start keeps probing upward from it.",
            ),
        ],
    },
    TableDoc {
        name: "deferred_indexes",
        about: "Secondary indexes of an object table that a first load dropped while it fills the table, built again when \
                the load ends (or, after a crash, at the next start). Empty except during a first load.",
        columns: &[
            ("name", "The index's name."),
            ("table_name", "The object table it belongs to."),
            ("definition", "Its `CREATE INDEX` statement, as `pg_get_indexdef` gave it."),
            ("deferred_at", "When the first load dropped it."),
        ],
    },
    TableDoc {
        name: "reporting_layer",
        about: "What the comments and views generated from the catalogue were last applied as (a start with the same ones does nothing).",
        columns: &[
            ("singleton", "Always true: one row."),
            ("fingerprint", "md5 of the statements applied."),
            ("version", "The partnerstack-mirror version that applied them."),
            ("applied_at", "When."),
        ],
    },
    TableDoc {
        name: "granted_roles",
        about: "The roles of database.readers, database.consumers and database.writers at the last start, with what each \
                was granted on this schema; a role no longer named loses its privileges at the next start.",
        columns: &[
            ("role", "The role's name."),
            ("tier", "`reader`, `consumer` or `writer` (each includes the ones before it)."),
            ("granted_at", "When it was granted this tier."),
        ],
    },
    TableDoc {
        name: "push_runs",
        about: "One row per run of a `[[push]]`: what its query returned, what differed from the mirror, what it queued, and \
                why it queued nothing when the brake held or the run failed. Written when the run ends, in the transaction that \
                queued its requests. Pruned after `sync.retain_runs`.",
        columns: &[
            ("id", "The run's id."),
            ("push", "The push's `name` in the configuration."),
            ("holder", "The daemon that ran it (`daemons.holder`), or `push run` from a shell."),
            ("started_at", "When the run started."),
            ("finished_at", "When it ended."),
            ("forced", "Whether `push run --force` let it past the brake."),
            (
                "outcome",
                "`changed` (it queued requests), `unchanged` (nothing to queue), `braked` (more changes than `max_changes`: \
                 nothing queued) or `failed` (see `error`).",
            ),
            ("rows_read", "Rows the query returned."),
            ("unchanged", "Rows whose record already holds the desired values."),
            ("changes", "Records with a difference to queue now (what the brake counts)."),
            ("requests_queued", "Write-back requests queued (a record may get an update and a tag change)."),
            ("refused_by_brake", "Changes not queued because they were more than `max_changes` (0 unless the brake held)."),
            ("max_changes", "The brake's limit for this run (`max_changes`, or 10% of the object's rows, at least 10)."),
            ("in_flight", "Differences whose request for the same values is still pending or running: not queued again."),
            (
                "held",
                "Differences not queued again: the last request for the same values failed and its backoff has not passed, or it \
                 succeeded and PartnerStack shows other values (queued again once the record changes).",
            ),
            ("skipped", "Rows with a NULL key."),
            ("not_found", "Rows whose record the mirror does not hold (or holds archived) where the push cannot create it."),
            ("error", "Why the run failed or the brake held."),
        ],
    },
    TableDoc {
        name: "push_records",
        about: "The last request each push queued per record and operation: what tells a difference whose request is still on \
                its way, or failed a moment ago, from one to queue now.",
        columns: &[
            ("push", "The push's `name`."),
            ("record", "The record, as the query's key column names it (PartnerStack's key, or the external key)."),
            ("operation", "`create`, `update` or `modify_tags`."),
            ("digest", "md5 of the desired values the request was queued for."),
            ("seq", "How many requests the push has queued for this record and operation (part of the idempotency key)."),
            ("request_id", "The request (`write_queue.id`)."),
            ("failures", "Requests for these same values that failed in a row before this one (the backoff grows with it)."),
            ("queued_at", "When the request was queued."),
        ],
    },
    TableDoc {
        name: "_sqlx_migrations",
        about: "The migrations applied to this schema (kept by sqlx, the migration library).",
        columns: &[
            ("version", "The migration's number (`migrations/NNNN_*.sql`)."),
            ("description", "Its name."),
            ("installed_on", "When it was applied."),
            ("success", "Whether it completed."),
            ("checksum", "A hash of its text."),
            ("execution_time", "How long it took, in nanoseconds."),
        ],
    },
];

/// The functions users call, by signature.
pub const FUNCTIONS: &[(&str, &str)] = &[
    (
        "next_events(text, integer)",
        "Up to `max` events after the named consumer's committed position, in id order (from the start for a new consumer).",
    ),
    (
        "commit_events(text, bigint)",
        "Moves the named consumer's position forward to `id` (never back; an id past the newest event is refused); returns the position.",
    ),
    ("epoch_ms_to_timestamptz(bigint)", "The API's epoch milliseconds as a timestamptz, exactly (no floating point)."),
];

pub(super) fn write(script: &mut Script) {
    for table in BOOKKEEPING {
        script.comment("TABLE", &ident(table.name), table.about);
        script.comment_columns(table.name, table.columns.iter().copied());
    }
    for (function, about) in FUNCTIONS {
        script.comment("FUNCTION", function, about);
    }
}
