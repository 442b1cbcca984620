-- Write-back requests changed from SQL keep the queue's bookkeeping (SPEC 6, 10).

-- `refresh` (GET one record into the mirror) applies to every object read one by one, not
-- only to those the API can change. Partner-team members have no single-record read.
CREATE OR REPLACE FUNCTION write_queue_check() RETURNS trigger LANGUAGE plpgsql AS $$
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
        WHEN 'refresh' THEN ARRAY['action', 'application', 'customer', 'deal', 'group', 'lead', 'partnership', 'reward', 'transaction']
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

-- A status set by hand (`UPDATE write_queue SET status = 'cancelled' …`, or a failed request
-- put back to 'pending') stamps `updated_at`, and `finished_at` when the request reaches a
-- final state (retention prunes by it) or clears it when the request is open again. The
-- workers' own updates set the same values; the WHEN clause spares them nothing else.
CREATE FUNCTION write_queue_stamp_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.finished_at := CASE WHEN NEW.status IN ('succeeded', 'failed', 'cancelled') THEN coalesce(NEW.finished_at, now()) END;
    RETURN NEW;
END
$$;
CREATE TRIGGER write_queue_stamp_status BEFORE UPDATE OF status ON write_queue
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION write_queue_stamp_status();
UPDATE write_queue SET finished_at = updated_at WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NULL;
