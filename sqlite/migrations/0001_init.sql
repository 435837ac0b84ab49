-- Times are Unix nanoseconds (INTEGER): exact, and the same in both stores.
-- Decimals (rollup sums, min, max, latest) are TEXT holding an exact decimal.

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    settings   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE customers (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    currency   TEXT NOT NULL,
    time_zone  TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;

CREATE TABLE meters (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    key         TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    aggregation TEXT NOT NULL,
    value_path  TEXT NOT NULL,
    group_by    TEXT NOT NULL,
    filter      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters(name, value) VALUES ('meters_version', 0);

-- Raw events, first received wins. The primary key is the dedup record.
CREATE TABLE events (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    type          TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    time          INTEGER NOT NULL,
    time_given    INTEGER NOT NULL,
    ingest_time   INTEGER NOT NULL,
    properties    TEXT NOT NULL,
    hash          BLOB NOT NULL,
    log_partition INTEGER NOT NULL,
    log_seq       INTEGER NOT NULL,
    counted       TEXT NOT NULL,
    skipped       TEXT NOT NULL,
    duplicates    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE event_conflicts (
    tenant_id     TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    hash          BLOB NOT NULL,
    log_partition INTEGER NOT NULL,
    log_seq       INTEGER NOT NULL,
    seen_at       INTEGER NOT NULL
);
CREATE INDEX event_conflicts_event ON event_conflicts(tenant_id, event_id);

CREATE TABLE rollups (
    tenant_id   TEXT NOT NULL,
    meter       TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    minute      INTEGER NOT NULL,
    grp         TEXT NOT NULL,
    count       INTEGER NOT NULL,
    has_value   INTEGER NOT NULL,
    sum         TEXT NOT NULL,
    min         TEXT NOT NULL,
    max         TEXT NOT NULL,
    latest      TEXT NOT NULL,
    latest_time INTEGER NOT NULL,
    latest_id   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, meter, customer_id, minute, grp)
) WITHOUT ROWID;
CREATE INDEX rollups_meter_minute ON rollups(tenant_id, meter, minute);

CREATE TABLE uniques (
    tenant_id   TEXT NOT NULL,
    meter       TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    minute      INTEGER NOT NULL,
    grp         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, meter, customer_id, minute, grp, value)
) WITHOUT ROWID;

CREATE TABLE log_positions (
    log_partition INTEGER PRIMARY KEY,
    seq           INTEGER NOT NULL
);
