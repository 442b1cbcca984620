-- Named consumers of the events table: any program with a PostgreSQL driver consumes at least
-- once with two statements,
--   SELECT * FROM next_events('crm', 100);      -- up to 100 events after crm's position, in id order
--   SELECT commit_events('crm', 4711);          -- crm has handled everything up to 4711
-- Ids are handed out in commit order (the events_commit_order trigger), so reading after a
-- position never skips an event that commits later with a smaller id.
CREATE TABLE event_consumers (
    name       text PRIMARY KEY CHECK (name <> ''),
    position   bigint NOT NULL DEFAULT 0 CHECK (position >= 0),   -- every event up to here is handled
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()                 -- the last commit (activity, for retention)
);

-- Up to `max` events after the consumer's committed position (from the beginning for a
-- consumer not seen before), in id order. Reads the primary key from the position on: as
-- cheap at ten million events as at ten.
CREATE FUNCTION next_events(consumer text, max integer) RETURNS SETOF events
LANGUAGE sql STABLE AS $$
    SELECT e.* FROM events e
    WHERE e.id > coalesce((SELECT c.position FROM event_consumers c WHERE c.name = consumer), 0)
    ORDER BY e.id
    LIMIT greatest(max, 0)
$$;

-- Moves the consumer's position forward to `id` (never back: a late or repeated commit is
-- harmless) and creates the consumer on first use. Returns the position now committed.
CREATE FUNCTION commit_events(consumer text, id bigint) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO event_consumers AS c (name, position) VALUES (consumer, greatest(id, 0))
    ON CONFLICT (name) DO UPDATE
        SET position = greatest(c.position, excluded.position), updated_at = now()
    RETURNING c.position
$$;
