-- The schema mirrors sqlite/migrations/0001_init.sql so that both stores
-- keep the same data with the same semantics.
--
-- Times are Unix nanoseconds (BIGINT): exact, and the same in both stores.
-- Decimals (rollup sum, min, max, latest) are NUMERIC so that rollup merges
-- run in SQL exactly (see AddRollups). Unconstrained NUMERIC keeps the scale
-- of its inputs and adds like apd, so the text read back equals the text
-- SQLite stores.
--
-- Identifiers that are compared or ordered (ids, keys, latest_id) use the
-- "C" collation: Go and SQLite compare strings bytewise, and a linguistic
-- collation would page customers or pick the "latest" event differently.
--
-- JSON columns are TEXT, not JSONB: event properties must come back byte for
-- byte (their hash is part of dedup), and the rest is only ever decoded in Go.

CREATE TABLE tenants (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    settings   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT COLLATE "C" PRIMARY KEY,
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE customers (
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    id         TEXT COLLATE "C" NOT NULL,
    name       TEXT NOT NULL,
    currency   TEXT NOT NULL,
    time_zone  TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE meters (
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    key         TEXT COLLATE "C" NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    aggregation TEXT NOT NULL,
    value_path  TEXT NOT NULL,
    group_by    TEXT NOT NULL,
    filter      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters(name, value) VALUES ('meters_version', 0);

-- Raw events, first received wins. The primary key is the dedup record.
CREATE TABLE events (
    tenant_id     TEXT COLLATE "C" NOT NULL,
    id            TEXT COLLATE "C" NOT NULL,
    type          TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    time          BIGINT NOT NULL,
    time_given    BOOLEAN NOT NULL,
    ingest_time   BIGINT NOT NULL,
    properties    TEXT NOT NULL,
    hash          BYTEA NOT NULL,
    log_partition INTEGER NOT NULL,
    log_seq       BIGINT NOT NULL,
    counted       TEXT NOT NULL,
    skipped       TEXT NOT NULL,
    duplicates    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE event_conflicts (
    tenant_id     TEXT COLLATE "C" NOT NULL,
    event_id      TEXT COLLATE "C" NOT NULL,
    hash          BYTEA NOT NULL,
    log_partition INTEGER NOT NULL,
    log_seq       BIGINT NOT NULL,
    seen_at       BIGINT NOT NULL
);
CREATE INDEX event_conflicts_event ON event_conflicts(tenant_id, event_id);

-- has_value is false while only count-only deltas were added; sum, min, max
-- and latest then hold 0 and latest_time/latest_id 0 and ''.
CREATE TABLE rollups (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    meter       TEXT COLLATE "C" NOT NULL,
    customer_id TEXT COLLATE "C" NOT NULL,
    minute      BIGINT NOT NULL,
    grp         TEXT COLLATE "C" NOT NULL,
    count       BIGINT NOT NULL,
    has_value   BOOLEAN NOT NULL,
    sum         NUMERIC NOT NULL,
    min         NUMERIC NOT NULL,
    max         NUMERIC NOT NULL,
    latest      NUMERIC NOT NULL,
    latest_time BIGINT NOT NULL,
    latest_id   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, meter, customer_id, minute, grp)
);
CREATE INDEX rollups_meter_minute ON rollups(tenant_id, meter, minute);

CREATE TABLE uniques (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    meter       TEXT COLLATE "C" NOT NULL,
    customer_id TEXT COLLATE "C" NOT NULL,
    minute      BIGINT NOT NULL,
    grp         TEXT COLLATE "C" NOT NULL,
    value       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, meter, customer_id, minute, grp, value)
);

CREATE TABLE log_positions (
    log_partition INTEGER PRIMARY KEY,
    seq           BIGINT NOT NULL
);
