-- The request rate each PartnerStack key was found to allow (SPEC 12), so a restarted daemon
-- starts from it instead of probing again from a cautious 5 a second. One row per API and
-- public key (never the private key); the daemon writes it every minute and when it stops.
-- Several daemons on one key each learn their share, and the last to write wins.
CREATE TABLE api_budget (
    api_url             text             NOT NULL,
    public_key          text             NOT NULL,
    requests_per_second double precision NOT NULL CHECK (requests_per_second > 0),
    learned_at          timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (api_url, public_key)
);
