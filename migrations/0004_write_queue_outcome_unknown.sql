-- When an attempt of a create or convert may have reached the API without its answer
-- reaching us: the connection dropped, the request timed out, or the worker holding it
-- stopped (its lease expired). NULL: every attempt so far had a definite answer. While set,
-- the request is not sent again until the record has been looked up by its natural key, and
-- not found for `queue.lookup_grace` (PartnerStack can take minutes to show a new record).
ALTER TABLE write_queue ADD COLUMN outcome_unknown_since timestamptz;
