-- The mirror: one table per PartnerStack object type, the events table and the bookkeeping.
--
-- Every statement is unqualified: the daemon sets `search_path` to the configured schema
-- (default `partnerstack`) on every connection, so one database can hold several mirrors.
-- Migrations are additive: later ones never drop what BI users may have built views on.

-- Exact conversion of the API's epoch milliseconds (no floating point on the way).
CREATE FUNCTION epoch_ms_to_timestamptz(ms bigint) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN ms IS NULL THEN NULL ELSE timestamptz 'epoch' + ms * interval '1 millisecond' END;

CREATE TABLE partnerships (
    key             text PRIMARY KEY,
    partner_key     text,
    email           text,
    first_name      text,
    last_name       text,
    joined_at       timestamptz,
    group_key       text,
    group_name      text,
    team_key        text,
    tier_key        text,
    tags            text[],
    claimed         boolean,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partnerships_updated_at_idx ON partnerships (updated_at);
CREATE INDEX partnerships_partner_key_idx ON partnerships (partner_key);
CREATE INDEX partnerships_group_key_idx ON partnerships (group_key);
CREATE INDEX partnerships_tier_key_idx ON partnerships (tier_key);

CREATE TABLE customers (
    key             text PRIMARY KEY,
    customer_key    text,
    email           text,
    name            text,
    partner_key     text,
    partnership_key text,
    provider_key    text,
    source_key      text,
    source_type     text,
    test            boolean,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_updated_at_idx ON customers (updated_at);
CREATE INDEX customers_customer_key_idx ON customers (customer_key);
CREATE INDEX customers_partner_key_idx ON customers (partner_key);
CREATE INDEX customers_partnership_key_idx ON customers (partnership_key);

CREATE TABLE deals (
    key             text PRIMARY KEY,
    account_name    text,
    amount          bigint,
    close_date      date,
    contact_first_name text,
    contact_last_name text,
    customer_key    text,
    external_key    text,
    group_key       text,
    lost_reason     text,
    mold_key        text,
    partner_key     text,
    source          text,
    stage           text,
    team_key        text,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deals_updated_at_idx ON deals (updated_at);
CREATE INDEX deals_partner_key_idx ON deals (partner_key);
CREATE INDEX deals_customer_key_idx ON deals (customer_key);
CREATE INDEX deals_group_key_idx ON deals (group_key);
CREATE INDEX deals_external_key_idx ON deals (external_key);

CREATE TABLE leads (
    key             text PRIMARY KEY,
    amount          bigint,
    approved        boolean,
    external_key    text,
    group_key       text,
    mold_key        text,
    partner_key     text,
    status          text,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leads_updated_at_idx ON leads (updated_at);
CREATE INDEX leads_partner_key_idx ON leads (partner_key);
CREATE INDEX leads_group_key_idx ON leads (group_key);
CREATE INDEX leads_external_key_idx ON leads (external_key);

CREATE TABLE transactions (
    key             text PRIMARY KEY,
    amount          bigint,
    amount_usd      bigint,
    currency        text,
    approved        boolean,
    test            boolean,
    category_key    text,
    product_key     text,
    customer_key    text,
    customer_external_key text,
    partnership_key text,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_updated_at_idx ON transactions (updated_at);
CREATE INDEX transactions_customer_key_idx ON transactions (customer_key);
CREATE INDEX transactions_partnership_key_idx ON transactions (partnership_key);

CREATE TABLE rewards (
    key             text PRIMARY KEY,
    amount          bigint,
    description     text,
    reward_status   text,
    action_key      text,
    customer_key    text,
    invoice_status  text,
    partnership_key text,
    transaction_key text,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rewards_updated_at_idx ON rewards (updated_at);
CREATE INDEX rewards_customer_key_idx ON rewards (customer_key);
CREATE INDEX rewards_partnership_key_idx ON rewards (partnership_key);
CREATE INDEX rewards_transaction_key_idx ON rewards (transaction_key);

CREATE TABLE actions (
    key             text PRIMARY KEY,
    "type"          text,
    "value"         bigint,
    partnership_key text,
    customer_key    text,
    company_key     text,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX actions_updated_at_idx ON actions (updated_at);
CREATE INDEX actions_partnership_key_idx ON actions (partnership_key);
CREATE INDEX actions_customer_key_idx ON actions (customer_key);

CREATE TABLE groups (
    key             text PRIMARY KEY,
    name            text,
    slug            text,
    is_default      boolean,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX groups_updated_at_idx ON groups (updated_at);

CREATE TABLE applications (
    key             text PRIMARY KEY,
    email           text,
    first_name      text,
    last_name       text,
    approved        boolean,
    decline_reason  text,
    group_key       text,
    group_name      text,
    mold_key        text,
    partner_key     text,
    partnership_key text,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX applications_updated_at_idx ON applications (updated_at);
CREATE INDEX applications_partner_key_idx ON applications (partner_key);
CREATE INDEX applications_partnership_key_idx ON applications (partnership_key);
CREATE INDEX applications_group_key_idx ON applications (group_key);

CREATE TABLE partner_team_members (
    key             text PRIMARY KEY,
    team_key        text,
    email           text,
    first_name      text,
    last_name       text,
    joined_at       timestamptz,
    created_at      timestamptz,
    updated_at      timestamptz,
    archived        boolean NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    raw             jsonb NOT NULL,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_team_members_updated_at_idx ON partner_team_members (updated_at);
CREATE INDEX partner_team_members_team_key_idx ON partner_team_members (team_key);
-- Change events. A consumer that reads `WHERE id > $last ORDER BY id` sees every event once,
-- in commit order: the statement trigger below makes event writers take one transaction-scoped
-- lock before their ids are drawn, so ids are handed out in the order transactions commit.
CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type  text        NOT NULL,
    object_type text        NOT NULL,
    object_key  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    source      text        NOT NULL CHECK (source IN ('backfill', 'poll', 'reconcile', 'write_back')),
    changes     jsonb,
    data        jsonb
);
CREATE INDEX events_object_idx ON events (object_type, object_key);
CREATE INDEX events_event_type_idx ON events (event_type, id);

CREATE FUNCTION events_serialize_writers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Held until commit or rollback; the second key keeps clear of other users' advisory locks.
    PERFORM pg_advisory_xact_lock(hashtext(TG_TABLE_SCHEMA || '.events'), 1837);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_commit_order BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_serialize_writers();

CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit; several in one transaction collapse into one.
    PERFORM pg_notify('partnerstack_events', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();

-- One row per object: where incremental polling stands and how the last passes went.
CREATE TABLE sync_state (
    object                text PRIMARY KEY,
    -- Every change at or before this instant has been read (updated_at, or created_at for
    -- objects whose API has no updated filter). NULL until the first backfill completes.
    cursor                timestamptz,
    window_start          timestamptz,
    window_end            timestamptz,
    backfill_completed_at timestamptz,
    last_rescan_at        timestamptz,
    last_reconcile_at     timestamptz,
    last_success_at       timestamptz,
    last_error            text,
    last_error_at         timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- One row per pass of one object.
CREATE TABLE sync_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object         text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('backfill', 'poll', 'rescan', 'reconcile')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    window_start   timestamptz,
    window_end     timestamptz,
    pages          integer     NOT NULL DEFAULT 0,
    records_read   integer     NOT NULL DEFAULT 0,
    rows_written   integer     NOT NULL DEFAULT 0,
    events_written integer     NOT NULL DEFAULT 0,
    requests       integer     NOT NULL DEFAULT 0,
    outcome        text        NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'succeeded', 'failed')),
    error          text
);
CREATE INDEX sync_runs_object_idx ON sync_runs (object, id DESC);

-- Records the API returned that could not be stored. A later clean copy of the record
-- removes its row.
CREATE TABLE quarantine (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object        text        NOT NULL,
    key           text,
    -- key when there is one, otherwise a hash of the raw text: one row per bad record.
    fingerprint   text        NOT NULL,
    raw           text        NOT NULL,
    error         text        NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    times_seen    integer     NOT NULL DEFAULT 1,
    UNIQUE (object, fingerprint)
);
