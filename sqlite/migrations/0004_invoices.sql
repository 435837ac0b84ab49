-- Invoices, credit notes, their number series, and test clocks.
--
-- Finalized invoices and credit notes are immutable, and the database itself
-- enforces it with triggers: a bug, a hand-written UPDATE in a console or a
-- future code path cannot rewrite an issued document. Numbers are gapless
-- per series: a counter row is incremented (by exactly one, enforced below)
-- inside the transaction that uses the number, so a rolled-back
-- finalization gives its number back. docs/ARCHITECTURE.md, "Invoice
-- storage", tells why.
--
-- As in 0002, rows keep their object as a JSON body plus the columns queries
-- filter on and the columns that change after the insert; those are read
-- from the column, never the body. Times are Unix nanoseconds.

CREATE TABLE test_clocks (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    now        INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;

-- A customer's test clock, set at creation and never changed; NULL for
-- none. CreateCustomer checks that the clock exists in the tenant (clocks
-- are never deleted).
ALTER TABLE customers ADD COLUMN test_clock TEXT;
CREATE INDEX customers_test_clock ON customers(tenant_id, test_clock) WHERE test_clock IS NOT NULL;

-- body is the invoice as EnsureInvoice stored it (a draft). series is ''
-- for the tenant's own numbers, else the test clock id. sequence, number,
-- finalized_at, total and document are set once, by finalization;
-- voided_at and void_reason once more, by voiding.
CREATE TABLE invoices (
    tenant_id       TEXT NOT NULL,
    id              TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    boundary        INTEGER NOT NULL,
    test_clock      TEXT NOT NULL,
    series          TEXT NOT NULL,
    due_at          INTEGER NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    sequence        INTEGER,
    number          TEXT,
    finalized_at    INTEGER,
    total           TEXT,
    document        TEXT,
    voided_at       INTEGER,
    void_reason     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, subscription_id, boundary),
    UNIQUE (tenant_id, series, sequence),
    CHECK (status IN ('draft', 'finalized', 'void')),
    CHECK ((status = 'draft') = (sequence IS NULL)),
    CHECK (status = 'draft' OR (number IS NOT NULL AND finalized_at IS NOT NULL AND total IS NOT NULL AND document IS NOT NULL)),
    CHECK ((status = 'void') = (voided_at IS NOT NULL)),
    CHECK ((status = 'void') = (void_reason <> ''))
);
CREATE INDEX invoices_customer ON invoices(tenant_id, customer_id);
CREATE INDEX invoices_test_clock ON invoices(tenant_id, test_clock) WHERE test_clock <> '';
CREATE INDEX invoices_due ON invoices(due_at) WHERE status = 'draft';

-- A finalized invoice may only become void, changing nothing but status,
-- voided_at and void_reason; a void invoice never changes.
CREATE TRIGGER invoices_immutable BEFORE UPDATE ON invoices
WHEN OLD.status <> 'draft' AND NOT (
    OLD.status = 'finalized' AND NEW.status = 'void'
    AND NEW.tenant_id IS OLD.tenant_id AND NEW.id IS OLD.id
    AND NEW.customer_id IS OLD.customer_id AND NEW.subscription_id IS OLD.subscription_id
    AND NEW.boundary IS OLD.boundary AND NEW.test_clock IS OLD.test_clock
    AND NEW.series IS OLD.series AND NEW.due_at IS OLD.due_at AND NEW.body IS OLD.body
    AND NEW.sequence IS OLD.sequence AND NEW.number IS OLD.number
    AND NEW.finalized_at IS OLD.finalized_at AND NEW.total IS OLD.total
    AND NEW.document IS OLD.document
)
BEGIN
    SELECT RAISE(ABORT, 'invoice is immutable: a finalized invoice can only be voided, a void one never changes');
END;

CREATE TRIGGER invoices_keep_issued BEFORE DELETE ON invoices
WHEN OLD.status <> 'draft'
BEGIN
    SELECT RAISE(ABORT, 'invoice is immutable: only a draft can be deleted');
END;

-- Invoice number series: the last number taken per (tenant, series).
CREATE TABLE invoice_counters (
    tenant_id TEXT NOT NULL,
    series    TEXT NOT NULL,
    last      INTEGER NOT NULL CHECK (last >= 1),
    PRIMARY KEY (tenant_id, series)
) WITHOUT ROWID;

-- Credit note numbers, one series per tenant.
CREATE TABLE credit_note_counters (
    tenant_id TEXT PRIMARY KEY,
    last      INTEGER NOT NULL CHECK (last >= 1)
) WITHOUT ROWID;

-- Counters start at one, only ever move by one and are never removed: a
-- skipped or reused number would be a gap or a duplicate in a legal series.
CREATE TRIGGER invoice_counters_start BEFORE INSERT ON invoice_counters
WHEN NEW.last IS NOT 1
BEGIN
    SELECT RAISE(ABORT, 'number series start at one');
END;
CREATE TRIGGER credit_note_counters_start BEFORE INSERT ON credit_note_counters
WHEN NEW.last IS NOT 1
BEGIN
    SELECT RAISE(ABORT, 'number series start at one');
END;
CREATE TRIGGER invoice_counters_step BEFORE UPDATE ON invoice_counters
WHEN NEW.last IS NOT OLD.last + 1 OR NEW.tenant_id IS NOT OLD.tenant_id OR NEW.series IS NOT OLD.series
BEGIN
    SELECT RAISE(ABORT, 'number series only move forward by one');
END;
CREATE TRIGGER invoice_counters_keep BEFORE DELETE ON invoice_counters
BEGIN
    SELECT RAISE(ABORT, 'number series are never removed');
END;
CREATE TRIGGER credit_note_counters_step BEFORE UPDATE ON credit_note_counters
WHEN NEW.last IS NOT OLD.last + 1 OR NEW.tenant_id IS NOT OLD.tenant_id
BEGIN
    SELECT RAISE(ABORT, 'number series only move forward by one');
END;
CREATE TRIGGER credit_note_counters_keep BEFORE DELETE ON credit_note_counters
BEGIN
    SELECT RAISE(ABORT, 'number series are never removed');
END;

-- Credit notes are written once. body is the note (abacus.CreditNote);
-- total is its total as decimal text, summed in Go under the write lock.
CREATE TABLE credit_notes (
    tenant_id  TEXT NOT NULL,
    id         TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    invoice_id TEXT NOT NULL,
    total      TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, sequence),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices(tenant_id, id)
);
CREATE INDEX credit_notes_invoice ON credit_notes(tenant_id, invoice_id);

CREATE TRIGGER credit_notes_immutable BEFORE UPDATE ON credit_notes
BEGIN
    SELECT RAISE(ABORT, 'credit note is immutable');
END;
CREATE TRIGGER credit_notes_keep BEFORE DELETE ON credit_notes
BEGIN
    SELECT RAISE(ABORT, 'credit note is immutable');
END;
