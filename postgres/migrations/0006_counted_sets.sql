-- Where an event counted is stored once per distinct value, not once per
-- event, as on SQLite (its migration 0006; docs/ARCHITECTURE.md, "Counted
-- sets"). An event whose list is in counted_sets stores its id in
-- counted_set and '' in counted; one whose list is not (counted_set 0:
-- every row written before this migration, and a list seen once in its
-- insert and not cached) keeps the JSON in counted, as before. Lists are
-- added in transactions of their own, never rolled back once seen, so
-- the four appliers share them without waiting on each other's
-- transactions. Adding the column with a constant default rewrites no
-- row.
CREATE TABLE counted_sets (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    counted TEXT NOT NULL UNIQUE
);

ALTER TABLE events ADD COLUMN counted_set BIGINT NOT NULL DEFAULT 0;
