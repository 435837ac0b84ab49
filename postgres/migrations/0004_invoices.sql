-- Invoices, credit notes, their number series, and test clocks. The schema
-- mirrors sqlite/migrations/0004_invoices.sql.
--
-- Finalized invoices and credit notes are immutable, and the database itself
-- enforces it with triggers: a bug, a hand-written UPDATE in psql or a
-- future code path cannot rewrite an issued document. Numbers are gapless
-- per series: a counter row is incremented (by exactly one, enforced below)
-- inside the transaction that uses the number, so a rolled-back
-- finalization gives its number back, and the counter's row lock queues
-- concurrent finalizations of one series. docs/ARCHITECTURE.md, "Invoice
-- storage", tells why.
--
-- As in 0002, rows keep their object as a JSON body (TEXT, byte for byte)
-- plus the columns queries filter on and the columns that change after the
-- insert; those are read from the column, never the body. Times are Unix
-- nanoseconds; identifiers that are ordered use the "C" collation.

CREATE TABLE test_clocks (
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    id         TEXT COLLATE "C" NOT NULL,
    name       TEXT NOT NULL,
    now        BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- A customer's test clock, set at creation and never changed; NULL for
-- none. CreateCustomer checks that the clock exists in the tenant (clocks
-- are never deleted).
ALTER TABLE customers ADD COLUMN test_clock TEXT COLLATE "C";
CREATE INDEX customers_test_clock ON customers(tenant_id, test_clock, id) WHERE test_clock IS NOT NULL;

-- body is the invoice as EnsureInvoice stored it (a draft). series is ''
-- for the tenant's own numbers, else the test clock id. sequence, number,
-- finalized_at, total and document are set once, by finalization;
-- voided_at and void_reason once more, by voiding.
CREATE TABLE invoices (
    tenant_id       TEXT COLLATE "C" NOT NULL,
    id              TEXT COLLATE "C" NOT NULL,
    customer_id     TEXT COLLATE "C" NOT NULL,
    subscription_id TEXT COLLATE "C" NOT NULL,
    boundary        INTEGER NOT NULL,
    test_clock      TEXT COLLATE "C" NOT NULL,
    series          TEXT COLLATE "C" NOT NULL,
    due_at          BIGINT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    sequence        BIGINT,
    number          TEXT,
    finalized_at    BIGINT,
    total           TEXT,
    document        TEXT,
    voided_at       BIGINT,
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
-- voided_at and void_reason; a void invoice never changes; only drafts are
-- deleted. The UPDATE check compares whole rows, so a column added later is
-- covered without touching this function.
CREATE FUNCTION invoices_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rest invoices;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice is immutable: only a draft can be deleted (invoice % is %)', OLD.id, OLD.status
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'draft' THEN
        RETURN NEW;
    END IF;
    rest := NEW;
    rest.status := OLD.status;
    rest.voided_at := OLD.voided_at;
    rest.void_reason := OLD.void_reason;
    IF OLD.status = 'finalized' AND NEW.status = 'void' AND rest IS NOT DISTINCT FROM OLD THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'invoice is immutable: a finalized invoice can only be voided, a void one never changes (invoice % is %)', OLD.id, OLD.status
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();

-- Invoice number series: the last number taken per (tenant, series).
CREATE TABLE invoice_counters (
    tenant_id TEXT COLLATE "C" NOT NULL,
    series    TEXT COLLATE "C" NOT NULL,
    last      BIGINT NOT NULL CHECK (last >= 1),
    PRIMARY KEY (tenant_id, series)
);

-- Credit note numbers, one series per tenant.
CREATE TABLE credit_note_counters (
    tenant_id TEXT COLLATE "C" PRIMARY KEY,
    last      BIGINT NOT NULL CHECK (last >= 1)
);

-- Counters start at one, only ever move by one and are never removed: a
-- skipped or reused number would be a gap or a duplicate in a legal series.
CREATE FUNCTION number_series_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.last = 1 THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'number series start at one' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- The keys (every column but last) must not change either.
    IF TG_OP = 'UPDATE' AND NEW.last = OLD.last + 1 AND to_jsonb(NEW) - 'last' = to_jsonb(OLD) - 'last' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'number series only move forward by one and are never removed'
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER invoice_counters_step BEFORE INSERT OR UPDATE OR DELETE ON invoice_counters
    FOR EACH ROW EXECUTE FUNCTION number_series_step();
CREATE TRIGGER credit_note_counters_step BEFORE INSERT OR UPDATE OR DELETE ON credit_note_counters
    FOR EACH ROW EXECUTE FUNCTION number_series_step();

-- Credit notes are written once. body is the note (abacus.CreditNote);
-- total is its total as decimal text (not NUMERIC, so that it reads back
-- as written), summed in Go under the invoice's row lock.
CREATE TABLE credit_notes (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    sequence   BIGINT NOT NULL,
    invoice_id TEXT COLLATE "C" NOT NULL,
    total      TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, sequence),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices(tenant_id, id)
);
CREATE INDEX credit_notes_invoice ON credit_notes(tenant_id, invoice_id);

CREATE FUNCTION credit_notes_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit note is immutable' USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER credit_notes_immutable BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION credit_notes_immutable();

-- TRUNCATE skips row triggers: refuse it on the tables whose rows are
-- legal records.
CREATE FUNCTION refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% holds issued documents and cannot be truncated', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();
CREATE TRIGGER credit_notes_no_truncate BEFORE TRUNCATE ON credit_notes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();
CREATE TRIGGER invoice_counters_no_truncate BEFORE TRUNCATE ON invoice_counters
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();
CREATE TRIGGER credit_note_counters_no_truncate BEFORE TRUNCATE ON credit_note_counters
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();
