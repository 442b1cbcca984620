-- Mistakes a person makes at a psql prompt get a message that says what to do, and none of
-- them can quietly cost events or keep a row for ever.

-- `object_type` written as the table's name (`'deals'`) or in capitals: say which singular
-- is meant, as in `events.object_type`. Fires before `write_queue_check` (the triggers of one
-- event fire in the order of their names), whose message would only say that the operation
-- is not allowed for that type.
CREATE FUNCTION write_queue_catalogue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    known CONSTANT text[] := ARRAY['action', 'application', 'customer', 'deal', 'group', 'lead', 'partner_team',
                                   'partnership', 'reward', 'transaction'];
    meant text;
BEGIN
    IF NEW.object_type IS NULL OR NEW.object_type = ANY (known) THEN
        RETURN NEW;
    END IF;
    meant := CASE lower(btrim(NEW.object_type))
        WHEN 'partner_team_members' THEN 'partner_team'
        WHEN 'partner_team_member' THEN 'partner_team'
        ELSE regexp_replace(lower(btrim(NEW.object_type)), 's$', '')
    END;
    IF meant = ANY (known) OR lower(btrim(NEW.object_type)) = ANY (known) THEN
        RAISE EXCEPTION 'write_queue: unknown object_type "%"; write "%" (singular, lower case, as in events.object_type)',
            NEW.object_type, CASE WHEN lower(btrim(NEW.object_type)) = ANY (known) THEN lower(btrim(NEW.object_type)) ELSE meant END
            USING ERRCODE = 'check_violation';
    END IF;
    RAISE EXCEPTION 'write_queue: unknown object_type "%"', NEW.object_type
        USING ERRCODE = 'check_violation', HINT = 'object types: ' || array_to_string(known, ', ');
END
$$;
CREATE TRIGGER write_queue_catalogue BEFORE INSERT OR UPDATE OF object_type ON write_queue
    FOR EACH ROW EXECUTE FUNCTION write_queue_catalogue();

-- A request inserted already finished (history brought over from elsewhere) is stamped
-- `finished_at` like one finished by a worker, so `queue.retain_finished` prunes it too.
CREATE TRIGGER write_queue_stamp_inserted_finished BEFORE INSERT ON write_queue
    FOR EACH ROW WHEN (NEW.status IN ('succeeded', 'failed', 'cancelled') AND NEW.finished_at IS NULL)
    EXECUTE FUNCTION write_queue_stamp_status();

-- A position past the newest event would make the consumer skip every event up to it, and
-- positions never move back: refuse it. A commit at or below the position stays a harmless
-- no-op, whatever retention has pruned since.
CREATE OR REPLACE FUNCTION commit_events(consumer text, id bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
    committed bigint;
BEGIN
    -- max(id) reads one end of the primary key index.
    SELECT coalesce(max(e.id), 0) INTO newest FROM events e;
    IF commit_events.id > newest
       AND commit_events.id > coalesce((SELECT c.position FROM event_consumers c WHERE c.name = commit_events.consumer), 0) THEN
        RAISE EXCEPTION 'commit_events: % is past the newest event (%); commit the id of the last event handled', commit_events.id, newest
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO event_consumers AS c (name, position) VALUES (commit_events.consumer, greatest(commit_events.id, 0))
    ON CONFLICT (name) DO UPDATE
        SET position = greatest(c.position, excluded.position), updated_at = now()
    RETURNING c.position INTO committed;
    RETURN committed;
END
$$;
