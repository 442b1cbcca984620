-- Quiet at steady state (SPEC 14): requests only where news can be.

-- Whether the learned rate was found at a 429. A rate learned without ever meeting one is a
-- floor, not the limit: the next start keeps probing upward from it (slow start). Rates
-- remembered before this column existed count as found without a 429, which only costs a
-- quick climb to the first 429.
ALTER TABLE api_budget ADD COLUMN found_at_429 boolean NOT NULL DEFAULT false;

-- What the daemon's probe found about `min_updated` on transactions and rewards (SPEC 9.3),
-- probed at start and daily: 'honoured', 'ignored' or 'undetermined' (an empty list). While
-- honoured, they are polled by updated windows and leave the hourly rescan, from the first
-- complete read that ends after `updated_filter_since` (`last_rescan_at`) on.
ALTER TABLE sync_state
    ADD COLUMN updated_filter          text CHECK (updated_filter IN ('honoured', 'ignored', 'undetermined')),
    ADD COLUMN updated_filter_since    timestamptz,   -- when the probe first gave the current answer
    ADD COLUMN updated_filter_probed_at timestamptz;  -- when it last gave it

-- When each partner team's members were last read. A team is read again when a partnership
-- of it was written after that (new or changed), or when a webhook names it (the row is then
-- removed); the daily key scan reads every team.
CREATE TABLE partner_team_reads (
    team_key text PRIMARY KEY,
    read_at  timestamptz NOT NULL
);

-- API requests by minute and purpose (poll, rescan, key_scan, team, write_back, webhook,
-- probe, backfill), added up by every daemon and command on this mirror; `status` shows the
-- last hour and day. Pruned with `sync_runs` (sync.retain_runs).
CREATE TABLE api_requests (
    minute   timestamptz NOT NULL,
    purpose  text        NOT NULL,
    requests bigint      NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (minute, purpose)
);
