-- Push (SPEC 15): a query in the user's database says what PartnerStack should hold; each run
-- of a `[[push]]` compares it with the mirror and queues write-backs for what differs.

-- One row per run of a push, written when the run ends (in the transaction that queued its
-- requests, so a run that says it queued N requests did).
CREATE TABLE push_runs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    push             text        NOT NULL,
    holder           text        NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL DEFAULT now(),
    forced           boolean     NOT NULL DEFAULT false,
    outcome          text        NOT NULL CHECK (outcome IN ('changed', 'unchanged', 'braked', 'failed')),
    rows_read        bigint      NOT NULL DEFAULT 0,
    unchanged        bigint      NOT NULL DEFAULT 0,
    changes          bigint      NOT NULL DEFAULT 0,
    requests_queued  bigint      NOT NULL DEFAULT 0,
    refused_by_brake bigint      NOT NULL DEFAULT 0,
    max_changes      bigint,
    in_flight        bigint      NOT NULL DEFAULT 0,
    held             bigint      NOT NULL DEFAULT 0,
    skipped          bigint      NOT NULL DEFAULT 0,
    not_found        bigint      NOT NULL DEFAULT 0,
    error            text
);
CREATE INDEX push_runs_push_idx ON push_runs (push, id);
CREATE INDEX push_runs_finished_idx ON push_runs (finished_at);

-- The last request each push queued per record and operation: what tells a difference whose
-- request is still on its way, or failed a moment ago, from one to queue now.
CREATE TABLE push_records (
    push       text        NOT NULL,
    record     text        NOT NULL,
    operation  text        NOT NULL,
    digest     text        NOT NULL,
    seq        integer     NOT NULL,
    request_id bigint      NOT NULL,
    failures   integer     NOT NULL DEFAULT 0,
    queued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (push, record, operation)
);
