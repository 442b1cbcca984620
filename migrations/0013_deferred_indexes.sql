-- Secondary indexes a first load dropped, to build once its pages are in (issue 13): filling
-- an empty table and then sorting each index once costs PostgreSQL far less than keeping
-- every index up to date row by row. The definitions are kept here, in the same transaction
-- as the drop, so a load killed half-way loses none: every start (`Store::migrate`) and
-- every scan's end builds whatever is listed, then forgets it.
CREATE TABLE deferred_indexes (
    name        text        PRIMARY KEY,
    table_name  text        NOT NULL,
    definition  text        NOT NULL,
    deferred_at timestamptz NOT NULL DEFAULT now()
);
