-- The analyst's layer (issue 14): a companion for a misleading column name, and the record of
-- the comments and views the daemon generates from its catalogue at every start
-- (`src/store/reporting/`).

-- `customers.customer_key` is YOUR key for the customer, while the `customer_key` of
-- transactions, rewards, actions and deals holds PartnerStack's (`customers.key`): a join on
-- equal names is wrong. The companion carries the same value under the name transactions
-- give it, so `transactions.customer_external_key = customers.customer_external_key` reads as
-- what it is. Filled by the sync from now on, and here for the rows already mirrored.
ALTER TABLE customers ADD COLUMN customer_external_key text;
UPDATE customers SET customer_external_key = customer_key WHERE customer_key IS NOT NULL;
CREATE INDEX customers_customer_external_key_idx ON customers (customer_external_key);

-- What the reporting layer (every COMMENT ON and every view, generated from the catalogue)
-- was last applied as: a start whose generated statements match does nothing, so a restart
-- takes no lock on views BI users are reading.
CREATE TABLE reporting_layer (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    fingerprint text        NOT NULL,            -- md5 of the statements applied
    version     text        NOT NULL,            -- the partnerstack-mirror version that applied them
    applied_at  timestamptz NOT NULL DEFAULT now()
);
