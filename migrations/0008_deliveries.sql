-- Webhook deliveries: the events pushed to each `[[delivery]]` endpoint of the configuration.
-- One row per delivery, created by the daemon when it first sees the delivery configured.
CREATE TABLE deliveries (
    name             text PRIMARY KEY,
    -- Every event up to here is done for this delivery: sent (2xx), dead-lettered, or not
    -- matching its patterns. Events after it are sent again after a crash (same webhook-id).
    position         bigint      NOT NULL DEFAULT 0,
    state            text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'holding', 'disabled')),
    state_reason     text,                      -- why holding or disabled (e.g. the endpoint answered 410 Gone)
    -- One daemon delivers at a time: a lease with a fencing epoch, as for sync objects.
    holder           text,
    epoch            bigint      NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    last_sent_at     timestamptz,
    last_error       text,
    last_error_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()   -- the last position commit (activity, for retention)
);

-- Events a delivery gave up on after its attempts (`on_failure = "dead_letter"`), with the body
-- that was sent, so they can be sent again after the events table has pruned them.
-- `partnerstack-mirror delivery retry` sets `requeued_at`; the delivering daemon sends them again.
CREATE TABLE delivery_dead_letters (
    delivery    text        NOT NULL REFERENCES deliveries (name) ON DELETE CASCADE,
    event_id    bigint      NOT NULL,
    event_type  text        NOT NULL,
    object_type text        NOT NULL,
    object_key  text        NOT NULL,
    body        text        NOT NULL,
    attempts    integer     NOT NULL,
    last_error  text        NOT NULL,
    http_status integer,
    dead_at     timestamptz NOT NULL DEFAULT now(),
    requeued_at timestamptz,
    PRIMARY KEY (delivery, event_id)
);
CREATE INDEX delivery_dead_letters_requeued_idx ON delivery_dead_letters (delivery, event_id) WHERE requeued_at IS NOT NULL;
