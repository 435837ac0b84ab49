-- Where an event counted is stored once per distinct value, not once per
-- event, as on SQLite (its migration 0006; docs/ARCHITECTURE.md, "Counted
-- sets"). An event whose list is in counted_sets stores its id in
-- counted_set and '' in counted; one whose list is not (counted_set 0:
-- every row written before this migration, a list seen once in its insert
-- and not cached, and a list shorter than 16 or longer than 2,000 bytes)
-- keeps the JSON in counted, as before. Lists are
-- added in statements that commit at once, never rolled back once seen,
-- so appliers share them without waiting on each other's transactions.
-- Adding the column with a constant default rewrites no row (it takes a
-- brief exclusive lock on events).
CREATE TABLE counted_sets (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    counted TEXT COLLATE "C" NOT NULL UNIQUE
);

ALTER TABLE events ADD COLUMN counted_set BIGINT NOT NULL DEFAULT 0;
