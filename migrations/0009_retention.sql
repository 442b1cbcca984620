-- What the daemon's retention last pruned, per table, for `status`.
CREATE TABLE prunes (
    target        text PRIMARY KEY,             -- 'events', 'write_queue', 'sync_runs'
    last_run_at   timestamptz NOT NULL,
    last_removed  bigint      NOT NULL,
    total_removed bigint      NOT NULL,
    -- Why fewer were removed than the age alone allows: the consumer or delivery not past them,
    -- or one that stopped protecting events because it has been inactive for longer than the
    -- retention.
    note          text
);
-- Retention finds old finished write-back requests without reading the live ones.
CREATE INDEX write_queue_finished_idx ON write_queue (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX sync_runs_started_idx ON sync_runs (started_at);
