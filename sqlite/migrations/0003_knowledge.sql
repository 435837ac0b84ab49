-- Knowledge time (docs/ARCHITECTURE.md, "Knowledge time").
--
-- events.applied_at is the knowledge stamp of the aggregation transaction
-- that stored the event (Unix nanoseconds): a read "as of K" counts the
-- events with applied_at <= K. Events stored before this migration get 0:
-- known since forever, so every as-of read counts them, as the rollups do.
ALTER TABLE events ADD COLUMN applied_at INTEGER NOT NULL DEFAULT 0;

-- ScanEvents reads one customer's events over a time range.
CREATE INDEX events_customer_time ON events(tenant_id, customer_id, time);

-- The K of the last barrier: stamps are max(now, mark + 1), so a write
-- committed after a barrier is always stamped after it, even when the
-- clock stands still or steps back. One row.
CREATE TABLE knowledge_mark (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    mark INTEGER NOT NULL
);
INSERT INTO knowledge_mark(id, mark) VALUES (1, 0);
