-- Writes in doubt, and cancelling only what has not started.

-- When an attempt of a create or convert may have reached the API without its answer
-- reaching us: the connection dropped, the request timed out, or the worker holding it
-- stopped (its lease expired). NULL: every attempt so far had a definite answer. While set,
-- the request is not sent again until the record has been looked up by its natural key, and
-- not found for `queue.lookup_grace` (PartnerStack can take minutes to show a new record).
ALTER TABLE write_queue ADD COLUMN outcome_unknown_since timestamptz;

-- Only a request no worker has started can be cancelled: a running one may already have
-- reached the API, and a finished one has its outcome.
-- The WHEN clause keeps the workers' own status updates free of any trigger call.
CREATE FUNCTION write_queue_refuse_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'write_queue: request % is %; only pending requests can be cancelled', OLD.id, OLD.status
        USING ERRCODE = 'check_violation';
END
$$;
CREATE TRIGGER write_queue_refuse_cancel BEFORE UPDATE OF status ON write_queue
    FOR EACH ROW WHEN (NEW.status = 'cancelled' AND OLD.status NOT IN ('pending', 'cancelled'))
    EXECUTE FUNCTION write_queue_refuse_cancel();
