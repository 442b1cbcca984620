-- The write-back queue: a plain INSERT is all a user needs, e.g.
--   INSERT INTO partnerstack.write_queue (operation, object_type, object_key, payload)
--   VALUES ('update', 'deal', 'deal_abc', '{"stage": "won"}');
-- The trigger below rejects malformed requests at INSERT time with a message naming the problem.
CREATE TABLE write_queue (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operation       text        NOT NULL,
    object_type     text        NOT NULL,
    object_key      text,
    payload         jsonb       NOT NULL DEFAULT '{}',
    idempotency_key text UNIQUE,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    -- NULL: the daemon's queue.max_attempts.
    max_attempts    integer CHECK (max_attempts IS NULL OR max_attempts > 0),
    run_after       timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    locked_by       text,
    last_error      text,
    http_status     integer,
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX write_queue_claimable_idx ON write_queue (run_after, id) WHERE status IN ('pending', 'running');
CREATE INDEX write_queue_status_idx ON write_queue (status);

CREATE FUNCTION write_queue_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    allowed text[];
    missing text[];
    required text[];
    field text;
BEGIN
    allowed := CASE NEW.operation
        WHEN 'create' THEN ARRAY['action', 'customer', 'deal', 'lead', 'partnership', 'reward', 'transaction']
        WHEN 'update' THEN ARRAY['lead', 'deal', 'customer', 'partnership']
        WHEN 'delete' THEN ARRAY['lead', 'deal', 'customer', 'partnership']
        WHEN 'modify_tags' THEN ARRAY['partnership']
        WHEN 'convert' THEN ARRAY['lead', 'deal']
        WHEN 'refresh' THEN ARRAY['lead', 'deal', 'customer', 'partnership']
        WHEN 'fetch_attachments' THEN ARRAY['deal']
    END;
    IF allowed IS NULL THEN
        RAISE EXCEPTION 'write_queue: unknown operation "%"', NEW.operation
            USING ERRCODE = 'check_violation',
                  HINT = 'operations: create, update, delete, modify_tags, convert, refresh, fetch_attachments';
    END IF;
    IF NOT NEW.object_type = ANY (allowed) THEN
        RAISE EXCEPTION 'write_queue: operation "%" is not allowed for object_type "%"', NEW.operation, NEW.object_type
            USING ERRCODE = 'check_violation', HINT = format('"%s" applies to: %s', NEW.operation, array_to_string(allowed, ', '));
    END IF;
    IF jsonb_typeof(NEW.payload) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'write_queue: payload must be a JSON object' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.operation <> 'create' AND coalesce(btrim(NEW.object_key), '') = '' THEN
        RAISE EXCEPTION 'write_queue: operation "%" needs object_key (the record''s key in the mirror)', NEW.operation
            USING ERRCODE = 'check_violation';
    END IF;

    required := CASE
        WHEN NEW.operation = 'create' THEN CASE NEW.object_type
            WHEN 'customer' THEN ARRAY['customer_key', 'email', 'partner_key']
            WHEN 'lead' THEN ARRAY['external_key', 'partner_key', 'status']
            WHEN 'partnership' THEN ARRAY['email']
            WHEN 'transaction' THEN ARRAY['amount', 'currency']
            WHEN 'action' THEN ARRAY['target_type', 'target_key', 'type', 'value']
            WHEN 'reward' THEN ARRAY['amount']
            ELSE ARRAY[]::text[] END
        WHEN NEW.operation = 'convert' AND NEW.object_type = 'deal' THEN ARRAY['email']
        ELSE ARRAY[]::text[]
    END;
    SELECT array_agg(r) INTO missing FROM unnest(required) AS r WHERE NOT NEW.payload ? r;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'write_queue: % % payload is missing required field(s): %', NEW.operation, NEW.object_type, array_to_string(missing, ', ')
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.operation = 'create' AND NEW.object_type = 'deal' AND NOT (NEW.payload ? 'partner_key' OR NEW.payload ? 'group_key') THEN
        RAISE EXCEPTION 'write_queue: create deal payload needs partner_key (source partner) or group_key (source vendor)'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.operation = 'create' AND NEW.object_type = 'transaction'
       AND (SELECT count(*) FROM unnest(ARRAY['customer_key', 'customer_external_key', 'customer_email']) AS f WHERE NEW.payload ? f) <> 1 THEN
        RAISE EXCEPTION 'write_queue: create transaction payload needs exactly one of customer_key, customer_external_key, customer_email'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.operation = 'modify_tags' THEN
        IF NOT (NEW.payload ? 'add' OR NEW.payload ? 'remove') THEN
            RAISE EXCEPTION 'write_queue: modify_tags payload needs "add" and/or "remove" arrays of tags' USING ERRCODE = 'check_violation';
        END IF;
        FOREACH field IN ARRAY ARRAY['add', 'remove'] LOOP
            IF NEW.payload ? field AND jsonb_typeof(NEW.payload -> field) <> 'array' THEN
                RAISE EXCEPTION 'write_queue: modify_tags "%" must be an array of tags', field USING ERRCODE = 'check_violation';
            END IF;
        END LOOP;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER write_queue_check BEFORE INSERT OR UPDATE OF operation, object_type, object_key, payload ON write_queue
    FOR EACH ROW EXECUTE FUNCTION write_queue_check();

CREATE FUNCTION write_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('partnerstack_write_queue', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
CREATE TRIGGER write_queue_notify AFTER INSERT ON write_queue
    FOR EACH STATEMENT EXECUTE FUNCTION write_queue_notify();

-- Deal attachments fetched by `fetch_attachments`.
CREATE TABLE deal_files (
    deal_key     text        NOT NULL,
    file_key     text        NOT NULL,
    name         text,
    field_key    text,
    content      bytea,
    content_type text,
    size         bigint,
    fetched_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deal_key, file_key)
);
