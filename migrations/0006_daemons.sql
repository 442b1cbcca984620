-- The daemons working on this mirror, one line each, kept current by each daemon every few
-- seconds and removed when it stops cleanly: what `partnerstack-mirror status` shows about
-- the processes behind the tables (what each does or waits for, and what stops it).
CREATE TABLE daemons (
    holder     text PRIMARY KEY,              -- the name it holds leases under: host/pid/random
    version    text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    status     text NOT NULL,                 -- what it does or waits for (systemd's STATUS=)
    problem    text                           -- what keeps it from working, e.g. rejected credentials
);
