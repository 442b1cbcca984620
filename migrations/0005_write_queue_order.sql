-- Order per record: requests that touch the same record are carried out in id order, as two
-- INSERTs in SQL would be. A worker does not claim a request while an earlier request for one
-- of its records is pending (waiting for a retry included) or any other request for it is
-- running; a final state releases the next one.
--
-- `touches` names the records a request touches, filled in at INSERT by the trigger below:
--   'deal:<key>'            a record addressed by its mirror key (update, delete, tags, ...);
--   'deal@external_key=<value>'  a record a create makes, by each natural key its payload
--                           carries (customer_key for customers, external_key for deals and
--                           leads, partner_key and email for partnerships, key for transactions:
--                           the keys a lost create is looked up by);
--   a convert touches the lead or deal and the customer it makes
--   ('customer@customer_key=<value>', which for a lead defaults to the lead's external_key).
-- An empty array (creates without a natural key: actions, rewards) is ordered with nothing.

CREATE FUNCTION write_queue_touches(operation text, object_type text, object_key text, payload jsonb)
RETURNS text[] LANGUAGE plpgsql STABLE AS $$
DECLARE
    made text;
BEGIN
    IF operation = 'create' THEN
        RETURN coalesce(ARRAY(
            SELECT object_type || '@' || f || '=' || CASE WHEN f = 'email' THEN lower(payload ->> f) ELSE payload ->> f END
            FROM unnest(CASE object_type
                WHEN 'customer' THEN ARRAY['customer_key']
                WHEN 'deal' THEN ARRAY['external_key']
                WHEN 'lead' THEN ARRAY['external_key']
                WHEN 'partnership' THEN ARRAY['partner_key', 'email']
                WHEN 'transaction' THEN ARRAY['key']
                ELSE ARRAY[]::text[] END) AS f
            WHERE coalesce(payload ->> f, '') <> ''), ARRAY[]::text[]);
    END IF;
    IF operation = 'convert' THEN
        made := nullif(payload ->> 'customer_key', '');
        IF made IS NULL AND object_type = 'lead' THEN
            SELECT nullif(l.raw ->> 'external_key', '') INTO made FROM leads l WHERE l.key = object_key;
        END IF;
        RETURN ARRAY[object_type || ':' || object_key]
            || CASE WHEN made IS NULL THEN ARRAY[]::text[] ELSE ARRAY['customer@customer_key=' || made] END;
    END IF;
    RETURN ARRAY[object_type || ':' || object_key];
END
$$;

ALTER TABLE write_queue ADD COLUMN touches text[] NOT NULL DEFAULT '{}';
UPDATE write_queue SET touches = write_queue_touches(operation, object_type, object_key, payload);

CREATE FUNCTION write_queue_set_touches() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.touches := write_queue_touches(NEW.operation, NEW.object_type, NEW.object_key, NEW.payload);
    RETURN NEW;
END
$$;
-- Named to run after write_queue_check (triggers fire in name order), so a malformed request
-- is rejected with its own message first.
CREATE TRIGGER write_queue_set_touches BEFORE INSERT OR UPDATE OF operation, object_type, object_key, payload ON write_queue
    FOR EACH ROW EXECUTE FUNCTION write_queue_set_touches();

-- The claim looks for open requests that share a record with a candidate.
CREATE INDEX write_queue_open_touches_idx ON write_queue USING gin (touches) WITH (fastupdate = off) WHERE status IN ('pending', 'running');
