-- Several daemons may share one database: each object's sync is held by one of them at a
-- time. `epoch` grows with every change of holder; every write transaction of a pass checks
-- (and renews) the lease with the epoch it was granted, so a holder that lost its lease
-- (paused, partitioned, presumed dead) cannot write after another instance took over.
CREATE TABLE sync_leases (
    object      text PRIMARY KEY,
    holder      text        NOT NULL,
    epoch       bigint      NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

ALTER TABLE sync_runs ADD COLUMN holder text;
