-- PartnerStack webhooks in (SPEC 11). Every accepted webhook is kept in `webhook_inbox`
-- before it is answered, so PartnerStack's own retries cover a crash of ours; the daemon then
-- works through the inbox. Object webhooks are hints (they trigger a read of that object
-- type from the API, whose answer goes through the normal diff); training completions are
-- data PartnerStack sends no other way, and become `training_completions` rows and events.

-- Events found by a webhook-triggered read, and training completions, have source 'webhook'.
ALTER TABLE events DROP CONSTRAINT events_source_check;
ALTER TABLE events ADD CONSTRAINT events_source_check
    CHECK (source IN ('backfill', 'poll', 'reconcile', 'write_back', 'webhook'));

CREATE TABLE webhook_inbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    event        text,                        -- the event name as sent (`deal.updated`, `partnership_created`), if any
    -- The body, verbatim: text, because valid JSON may hold what `jsonb` refuses (a \u0000);
    -- `payload::jsonb` reads it as JSON.
    payload      text        NOT NULL,
    -- pending: not handled yet; read_requested: an object webhook, its object type was read;
    -- recorded: a training completion, stored; ignored: an event name the mirror does not use;
    -- quarantined: a training completion that could not be stored (see `error`).
    outcome      text        NOT NULL DEFAULT 'pending'
                 CHECK (outcome IN ('pending', 'read_requested', 'recorded', 'ignored', 'quarantined')),
    processed_at timestamptz,
    error        text
);
CREATE INDEX webhook_inbox_pending_idx ON webhook_inbox (id) WHERE outcome = 'pending';

CREATE TABLE training_completions (
    -- What makes two deliveries the same completion: the kind, the course or path, the
    -- partner and the moment (a hash of the payload when those are missing).
    completion_key  text PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('course', 'learning_path')),
    item_id         text,                     -- the course's or learning path's id
    item_name       text,
    partnership_key text,
    partner_key     text,
    partner_email   text,
    company_key     text,
    completed_at    timestamptz,
    payload         jsonb       NOT NULL,     -- the webhook body, verbatim (first delivery)
    received_at     timestamptz NOT NULL DEFAULT now(),
    deliveries      integer     NOT NULL DEFAULT 1  -- how often PartnerStack delivered it
);
CREATE INDEX training_completions_partner_key_idx ON training_completions (partner_key);
CREATE INDEX training_completions_partnership_key_idx ON training_completions (partnership_key);
