-- One customer's raw events are found through blocks, not a per-event index
-- (docs/ARCHITECTURE.md, "Event blocks").
--
-- The (tenant_id, customer_id, time) index of 0003 was one B-tree entry per
-- event, at one of as many insertion points as there are active customers:
-- measured on 2M events of `abacus bench` shape, it was more than half of
-- the SQLite cost of storing an event (10.1 -> 4.4 µs of CPU per event
-- without it, the commit's page writes 3.6 -> 1.3 µs). A block is instead
-- one row per (tenant, customer, minute of event time, apply transaction)
-- listing the rowids of the events that transaction stored: as many rows as
-- the index had entries when every transaction brings one event per
-- customer and minute, and tens to thousands of times fewer under load.
--
-- minute is floor(time / 60 s); applied_at is the stamp of the transaction
-- (the same as events.applied_at of every event listed); first_rowid, the
-- lowest rowid listed, makes the key unique; rowids is a JSON array.
CREATE TABLE event_blocks (
    tenant_id   TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    minute      INTEGER NOT NULL,
    applied_at  INTEGER NOT NULL,
    first_rowid INTEGER NOT NULL,
    rowids      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, minute, applied_at, first_rowid)
) WITHOUT ROWID;

INSERT INTO event_blocks(tenant_id, customer_id, minute, applied_at, first_rowid, rowids)
SELECT tenant_id, customer_id, minute, applied_at, MIN(rowid), json_group_array(rowid)
FROM (SELECT rowid, tenant_id, customer_id, applied_at,
             CASE WHEN time >= 0 THEN time / 60000000000 ELSE (time + 1) / 60000000000 - 1 END AS minute
      FROM events ORDER BY rowid)
GROUP BY tenant_id, customer_id, minute, applied_at;

DROP INDEX events_customer_time;
