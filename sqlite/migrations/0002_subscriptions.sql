-- Plans, subscription events and the subscription read models.
--
-- Each row keeps its object whole as a JSON body (TEXT) plus the columns its
-- queries filter and sort on, written from the same object in the same
-- statement. These tables are small and off the ingest path, so the bodies
-- spare a column per field without costing anything that matters. Columns
-- that change after the insert (an event's status, a charge's
-- superseded_at, an alert's resolved_at) are read from the column, never
-- the body. Times are Unix nanoseconds, as in 0001.

-- One row per plan version. Versions are immutable: CreatePlan inserts MAX + 1.
CREATE TABLE plans (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    key        TEXT NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key, version)
) WITHOUT ROWID;

-- Subscription event records. body is the event (abacus.SubscriptionEvent);
-- the other columns are the record's state and what the consumer looks
-- events up by. version is 0 while unknown: a held event that names only
-- its previous_id.
CREATE TABLE subscription_events (
    tenant_id       TEXT NOT NULL,
    id              TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    version         INTEGER NOT NULL,
    previous_id     TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    duplicates      INTEGER NOT NULL,
    body            TEXT NOT NULL,
    received_at     INTEGER NOT NULL,
    applied_at      INTEGER,
    log_partition   INTEGER NOT NULL,
    log_seq         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX subscription_events_version ON subscription_events(tenant_id, customer_id, status, version);
CREATE INDEX subscription_events_previous ON subscription_events(tenant_id, customer_id, status, previous_id);
CREATE INDEX subscription_events_subscription ON subscription_events(tenant_id, subscription_id, status, version);
CREATE INDEX subscription_events_held ON subscription_events(status, received_at);

-- How far each customer's event order is applied.
CREATE TABLE subscription_heads (
    tenant_id   TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
) WITHOUT ROWID;

-- The read model of each subscription (abacus.Subscription), replaced whole.
CREATE TABLE subscriptions (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    start_at    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX subscriptions_customer ON subscriptions(tenant_id, customer_id, start_at);

-- Charge records (abacus.Charge), bitemporal: a row is never changed except
-- to set superseded_at once. A charge id is derived from its terms, so a
-- later event can record a superseded id again: rows are keyed by a
-- surrogate row_id, and the partial unique index allows at most one current
-- (not superseded) row per id, so recording an id that is still current is
-- refused.
CREATE TABLE charges (
    row_id          INTEGER PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    id              TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    item            TEXT NOT NULL,
    starts_at       INTEGER NOT NULL,
    ends_at         INTEGER,
    recorded_at     INTEGER NOT NULL,
    superseded_at   INTEGER,
    body            TEXT NOT NULL
);
CREATE INDEX charges_subscription ON charges(tenant_id, subscription_id);
CREATE UNIQUE INDEX charges_current ON charges(tenant_id, id) WHERE superseded_at IS NULL;

-- The subscription consumer's log positions (log_positions is the
-- aggregator's).
CREATE TABLE subscription_positions (
    log_partition INTEGER PRIMARY KEY,
    seq           INTEGER NOT NULL
);

-- Operator alerts, raised once per (tenant_id, id). details is JSON text
-- kept byte for byte; '' when there are none.
CREATE TABLE alerts (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    message     TEXT NOT NULL,
    details     TEXT NOT NULL,
    raised_at   INTEGER NOT NULL,
    resolved_at INTEGER,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX alerts_raised ON alerts(tenant_id, raised_at);
