-- Set when an attempt of a create or convert may have reached the API without its answer
-- reaching us: the connection dropped, the request timed out, or the worker holding it
-- stopped (its lease expired). Until the record has been looked up by its natural key, the
-- request is not sent again.
ALTER TABLE write_queue ADD COLUMN outcome_unknown boolean NOT NULL DEFAULT false;
