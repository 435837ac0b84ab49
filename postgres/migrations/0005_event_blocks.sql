-- One customer's raw events are found through blocks, not a per-event index
-- (docs/ARCHITECTURE.md, "Event blocks"), as on SQLite.
--
-- The (tenant_id, customer_id, time) index of 0003 was one B-tree entry per
-- event, inserted at one of as many places as there are active customers.
-- With blocks instead, `abacus bench` peak runs on PostgreSQL went from
-- 39.3-41.0k to 42.5-51.1k events/s end to end (four interleaved runs each;
-- docs/BENCHMARKS.md, "seventh round"). A block is one
-- row per (tenant, customer, minute of event time, apply transaction)
-- listing the ids of the events that transaction stored. A PostgreSQL row
-- has no stable address to list (a ctid moves when `duplicates` is
-- updated), so a block lists event ids and a scan reads each event through
-- the primary key, which dedup needs anyway.
--
-- minute is floor(time / 60 s); applied_at is the stamp of the transaction
-- (the events' applied_at); first_id, the lowest id listed (bytewise),
-- makes the key unique even when two concurrent appliers take the same
-- stamp, since an event is stored by one transaction only. The blocks built
-- here group by stamp, not by transaction (which a stored event does not
-- record): transactions that shared a stamp share a block, which scans read
-- the same way.
-- Writers wait from here to the end of the migration: an event committed
-- after the blocks are built and before the index is dropped would have no
-- block, and no scan would find it. (Processes of the version before must
-- be stopped for the upgrade: they would insert events without blocks.)
LOCK TABLE events IN SHARE MODE;

CREATE TABLE event_blocks (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    customer_id TEXT COLLATE "C" NOT NULL,
    minute      BIGINT NOT NULL,
    applied_at  BIGINT NOT NULL,
    first_id    TEXT COLLATE "C" NOT NULL,
    ids         TEXT[] COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, minute, applied_at, first_id)
);

INSERT INTO event_blocks(tenant_id, customer_id, minute, applied_at, first_id, ids)
SELECT tenant_id, customer_id, minute, applied_at, min(id), array_agg(id ORDER BY id)
FROM (SELECT tenant_id, id, customer_id, applied_at,
             CASE WHEN time >= 0 THEN time / 60000000000 ELSE (time + 1) / 60000000000 - 1 END AS minute
      FROM events) e
GROUP BY tenant_id, customer_id, minute, applied_at;

DROP INDEX events_customer_time;
