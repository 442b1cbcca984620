-- In the user's database (SPEC 13): roles that may only read, consume events or queue
-- write-backs, and functions that never follow the caller's `search_path`. The grants
-- themselves depend on the configuration (`database.readers`, `.consumers`, `.writers`) and
-- are applied at every start (`src/store/grants.rs`); every function's `search_path` is pinned
-- to this schema at every start as well (`src/store/migrate.rs`), so later migrations cannot
-- forget it.

-- Consumers move their position only through commit_events and hold no UPDATE on
-- event_consumers: the function runs as its owner. A SECURITY DEFINER function must not read
-- the caller's objects by accident, so its search_path is this schema, then pg_catalog, then
-- pg_temp (last, so a caller's temporary table cannot stand in for event_consumers).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION commit_events(text, bigint) SECURITY DEFINER SET search_path = %I, pg_catalog, pg_temp',
                   current_schema());
END
$$;
REVOKE EXECUTE ON FUNCTION commit_events(text, bigint) FROM PUBLIC;

-- The roles the configuration named at the last start, with what each was granted, so that a
-- role taken out of the configuration loses what it was given.
CREATE TABLE granted_roles (
    role       text PRIMARY KEY,
    tier       text        NOT NULL CHECK (tier IN ('reader', 'consumer', 'writer')),
    granted_at timestamptz NOT NULL DEFAULT now()
);

-- Writers hold UPDATE on write_queue.status only to cancel requests no worker has started
-- (`write_queue_refuse_cancel` refuses the rest); every other change of status belongs to the
-- workers, which run as the table's owner. The WHEN clause keeps cancels free of the call.
CREATE FUNCTION write_queue_status_by_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_has_role((SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'MEMBER') THEN
        RAISE EXCEPTION 'write_queue: role % may cancel pending requests (status = ''cancelled'') but not set status "%"',
            current_user, NEW.status
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER write_queue_status_by_owner BEFORE UPDATE OF status ON write_queue
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status <> 'cancelled')
    EXECUTE FUNCTION write_queue_status_by_owner();
