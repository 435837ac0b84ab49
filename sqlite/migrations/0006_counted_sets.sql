-- Where an event counted is stored once per distinct value, not once per
-- event (docs/ARCHITECTURE.md, "Counted sets").
--
-- events.counted is the JSON list of the meters an event counted in and
-- its group key in each, ~214 B in `abacus bench`'s shape: 40% of an event
-- row, though 20 distinct lists cover all its events (a meter's groups are
-- dimensions such as model and region). An event whose list is in
-- counted_sets stores its id in counted_set and '' in counted; one whose
-- list is not (counted_set 0: every row written before this migration, a
-- list seen once in its insert and not cached, and a list shorter than 16
-- or longer than 2,000 bytes) keeps the JSON in counted, as before. Adding the column rewrites no row.
CREATE TABLE counted_sets (
    id      INTEGER PRIMARY KEY,
    counted TEXT NOT NULL UNIQUE
);

ALTER TABLE events ADD COLUMN counted_set INTEGER NOT NULL DEFAULT 0;
