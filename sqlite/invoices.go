package sqlite

// Invoices, credit notes and test clocks (abacus.InvoiceStore), on the
// tables of migrations/0004_invoices.sql. The rules both stores apply and
// the row readers are in internal/invoicedb; postgres/invoices.go has the
// same structure.
//
// Every write runs in one write transaction, and SQLite has one writer
// (BEGIN IMMEDIATE), so a read-check-write sequence here cannot interleave
// with another one, even from another process on the same file: what
// PostgreSQL needs row locks for, the write lock gives.

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/invoicedb"
	"github.com/abacus-billing/abacus/internal/rowbody"
)

// Row readers of the shared column lists, typed for queryAll.
func scanInvoice(row rowScanner) (*abacus.Invoice, error)       { return invoicedb.ScanInvoice(row) }
func scanInvoiceDoc(row rowScanner) (*abacus.Invoice, error)    { return invoicedb.ScanInvoiceDoc(row) }
func scanCreditNote(row rowScanner) (*abacus.CreditNote, error) { return invoicedb.ScanCreditNote(row) }
func scanTestClock(row rowScanner) (*abacus.TestClock, error)   { return invoicedb.ScanTestClock(row) }
func scanString(row rowScanner) (*string, error)                { return invoicedb.ScanString(row) }

const (
	invoiceColumns    = invoicedb.InvoiceColumns
	invoiceColumnsDoc = invoicedb.InvoiceColumnsDoc
	testClockColumns  = invoicedb.TestClockColumns
)

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func unknownClock(id string) error { return invoicedb.UnknownClock(id) }

// Invoices.

// EnsureInvoice stores inv as a draft unless its (subscription, boundary)
// has an invoice, and returns the stored one. EINVALID for a bad draft or
// an unknown test clock; ECONFLICT if inv's id is taken by another
// boundary.
func (s *Store) EnsureInvoice(ctx context.Context, inv *abacus.Invoice) (*abacus.Invoice, error) {
	if err := invoicedb.CheckDraft(inv); err != nil {
		return nil, err
	}
	body, draft, err := invoicedb.DraftBody(inv)
	if err != nil {
		return nil, err
	}
	var out *abacus.Invoice
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if inv.TestClockID != "" {
			if _, err := findTestClock(ctx, tx, inv.TenantID, inv.TestClockID); abacus.ErrorCode(err) == abacus.ENOTFOUND {
				return unknownClock(inv.TestClockID)
			} else if err != nil {
				return err
			}
		}
		// ON CONFLICT without a target: an existing (subscription,
		// boundary) is the idempotent case; an id taken by another
		// boundary is told apart below.
		if _, err := tx.ExecContext(ctx, `INSERT INTO invoices(tenant_id, id, customer_id, subscription_id, boundary, test_clock, series, due_at, body, status)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'draft') ON CONFLICT DO NOTHING`,
			inv.TenantID, inv.ID, inv.CustomerID, inv.SubscriptionID, inv.Boundary, inv.TestClockID, draft.Series, ns(inv.DueAt), body); err != nil {
			return err
		}
		out, err = scanInvoiceDoc(tx.QueryRowContext(ctx, `SELECT `+invoiceColumnsDoc+` FROM invoices WHERE tenant_id = ? AND subscription_id = ? AND boundary = ?`,
			inv.TenantID, inv.SubscriptionID, inv.Boundary))
		if errors.Is(err, sql.ErrNoRows) {
			return invoiceIDTaken(ctx, tx, inv)
		}
		return err
	})
	return out, err
}

// invoiceIDTaken explains why an invoice was not inserted although its
// boundary has none: its id belongs to another boundary.
func invoiceIDTaken(ctx context.Context, q dbReader, inv *abacus.Invoice) error {
	other, err := findInvoice(ctx, q, inv.TenantID, inv.ID)
	if err != nil {
		return err
	}
	return abacus.Errorf(abacus.ECONFLICT, "invoice id %q is taken by boundary %d of subscription %q", inv.ID, other.Boundary, other.SubscriptionID)
}

// FindInvoice returns one invoice with its document. ENOTFOUND.
func (s *Store) FindInvoice(ctx context.Context, tenantID, id string) (*abacus.Invoice, error) {
	return findInvoice(ctx, s.r, tenantID, id)
}

func findInvoice(ctx context.Context, q dbReader, tenantID, id string) (*abacus.Invoice, error) {
	inv, err := scanInvoiceDoc(q.QueryRowContext(ctx, `SELECT `+invoiceColumnsDoc+` FROM invoices WHERE tenant_id = ? AND id = ?`, tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("invoice", id)
	}
	return inv, err
}

// ListInvoices returns the invoices matching f by id, without documents.
func (s *Store) ListInvoices(ctx context.Context, f abacus.InvoiceFilter) ([]*abacus.Invoice, error) {
	var w rowbody.Where
	w.Add(`1 = 1`) // every condition is optional
	if f.TenantID != "" {
		w.Add(`tenant_id = ?`, f.TenantID)
	}
	if f.CustomerID != "" {
		w.Add(`customer_id = ?`, f.CustomerID)
	}
	if f.SubscriptionID != "" {
		w.Add(`subscription_id = ?`, f.SubscriptionID)
	}
	if f.TestClockID != "" {
		w.Add(`test_clock = ?`, f.TestClockID)
	}
	if f.Status != "" {
		w.Add(`status = ?`, string(f.Status))
	}
	if f.DueBy != nil {
		w.Add(`status = 'draft' AND due_at <= ?`, ns(*f.DueBy))
	}
	if f.After != "" {
		w.Add(`id > ?`, f.After)
	}
	limit := -1 // SQLite: no limit
	if f.Limit > 0 {
		limit = f.Limit
	}
	return queryAll(ctx, s.r, scanInvoice, `SELECT `+invoiceColumns+` FROM invoices WHERE `+w.String()+` ORDER BY id, tenant_id LIMIT ?`,
		append(w.Args, limit)...)
}

// SubscriptionInvoices returns every invoice of a subscription with its
// document, by boundary.
func (s *Store) SubscriptionInvoices(ctx context.Context, tenantID, subscriptionID string) ([]*abacus.Invoice, error) {
	return queryAll(ctx, s.r, scanInvoiceDoc, `SELECT `+invoiceColumnsDoc+` FROM invoices WHERE tenant_id = ? AND subscription_id = ? ORDER BY boundary`,
		tenantID, subscriptionID)
}

// FinalizeInvoice finalizes a draft in one transaction: the checks of
// invoicedb.CheckFinalize on the subscription's invoices, the next number
// of the series, and the document f.Render returns. A failure anywhere
// rolls the counter back with everything else, so no number is lost.
func (s *Store) FinalizeInvoice(ctx context.Context, tenantID, id string, f abacus.Finalization) (*abacus.Invoice, error) {
	if err := invoicedb.CheckFinalization(&f); err != nil {
		return nil, err
	}
	var inv *abacus.Invoice
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if inv, err = findInvoice(ctx, tx, tenantID, id); err != nil {
			return err
		}
		siblings, err := queryAll(ctx, tx, scanInvoice, `SELECT `+invoiceColumns+` FROM invoices WHERE tenant_id = ? AND subscription_id = ? ORDER BY boundary`,
			tenantID, inv.SubscriptionID)
		if err != nil {
			return err
		}
		if err := invoicedb.CheckFinalize(inv, siblings, f.KnownAt); err != nil {
			return err
		}
		var seq int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO invoice_counters(tenant_id, series, last) VALUES (?, ?, 1)
			ON CONFLICT (tenant_id, series) DO UPDATE SET last = last + 1 RETURNING last`, tenantID, inv.Series).Scan(&seq); err != nil {
			return err
		}
		if err := invoicedb.Finalize(inv, seq, &f); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE invoices SET status = ?, sequence = ?, number = ?, finalized_at = ?, total = ?, document = ?
			WHERE tenant_id = ? AND id = ?`,
			string(inv.Status), inv.Sequence, inv.Number, ns(*inv.FinalizedAt), inv.Total, string(inv.Document), tenantID, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// VoidInvoice marks a finalized invoice void, stamped with knowledge time.
// EINVALID for a missing or overlong reason; ENOTFOUND; ECONFLICT unless
// the invoice is finalized.
func (s *Store) VoidInvoice(ctx context.Context, tenantID, id, reason string, now func() time.Time) (*abacus.Invoice, error) {
	if err := invoicedb.CheckVoidReason(reason); err != nil {
		return nil, err
	}
	var inv *abacus.Invoice
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if inv, err = findInvoice(ctx, tx, tenantID, id); err != nil {
			return err
		}
		if err := invoicedb.CheckVoid(inv); err != nil {
			return err
		}
		at, err := knowledgeStamp(ctx, tx, now)
		if err != nil {
			return err
		}
		invoicedb.Void(inv, at, reason)
		_, err = tx.ExecContext(ctx, `UPDATE invoices SET status = ?, voided_at = ?, void_reason = ? WHERE tenant_id = ? AND id = ?`,
			string(inv.Status), ns(*inv.VoidedAt), inv.VoidReason, tenantID, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// DeleteDraft removes a draft. ENOTFOUND; ECONFLICT if it is not a draft.
func (s *Store) DeleteDraft(ctx context.Context, tenantID, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		inv, err := findInvoice(ctx, tx, tenantID, id)
		if err != nil {
			return err
		}
		if err := invoicedb.CheckDelete(inv); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM invoices WHERE tenant_id = ? AND id = ?`, tenantID, id)
		return err
	})
}

// Credit notes.

// CreateCreditNote numbers and stores n against a finalized invoice and
// returns it as stored (amounts at the currency's minor unit, total the
// sum of the lines). EINVALID; ENOTFOUND for the invoice; ECONFLICT when
// the invoice is not finalized, the credited total would exceed its total,
// or the id exists.
func (s *Store) CreateCreditNote(ctx context.Context, n *abacus.CreditNote) (*abacus.CreditNote, error) {
	if err := invoicedb.CheckCreditNote(n); err != nil {
		return nil, err
	}
	var out *abacus.CreditNote
	err := s.tx(ctx, func(tx *sql.Tx) error {
		inv, err := findInvoice(ctx, tx, n.TenantID, n.InvoiceID)
		if err != nil {
			return err
		}
		if err := invoicedb.CheckCreditable(inv); err != nil {
			return err
		}
		if out, err = invoicedb.PrepareCreditNote(n, inv.Currency); err != nil {
			return err
		}
		credited, err := queryAll(ctx, tx, scanString, `SELECT total FROM credit_notes WHERE tenant_id = ? AND invoice_id = ?`, n.TenantID, n.InvoiceID)
		if err != nil {
			return err
		}
		if err := invoicedb.CheckCredit(inv, credited, out.Total); err != nil {
			return err
		}
		var seq int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO credit_note_counters(tenant_id, last) VALUES (?, 1)
			ON CONFLICT (tenant_id) DO UPDATE SET last = last + 1 RETURNING last`, n.TenantID).Scan(&seq); err != nil {
			return err
		}
		body, err := invoicedb.CreditNoteBody(out, seq)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO credit_notes(tenant_id, id, sequence, invoice_id, total, body) VALUES (?, ?, ?, ?, ?, ?)`,
			n.TenantID, n.ID, seq, n.InvoiceID, out.Total, body)
		if isUniqueViolation(err) {
			return abacus.Errorf(abacus.ECONFLICT, "credit note %q already exists", n.ID)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListCreditNotes returns a tenant's credit notes, of one invoice when
// invoiceID is not empty, by number.
func (s *Store) ListCreditNotes(ctx context.Context, tenantID, invoiceID string) ([]*abacus.CreditNote, error) {
	var w rowbody.Where
	w.Add(`tenant_id = ?`, tenantID)
	if invoiceID != "" {
		w.Add(`invoice_id = ?`, invoiceID)
	}
	return queryAll(ctx, s.r, scanCreditNote, `SELECT `+invoicedb.CreditNoteColumns+` FROM credit_notes WHERE `+w.String()+` ORDER BY sequence`, w.Args...)
}

// Test clocks.

// CreateTestClock stores c. EINVALID; ECONFLICT if the id exists.
func (s *Store) CreateTestClock(ctx context.Context, c *abacus.TestClock) error {
	if err := invoicedb.CheckTestClock(c); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO test_clocks(`+testClockColumns+`) VALUES (?, ?, ?, ?, ?)`,
		c.TenantID, c.ID, c.Name, ns(c.Now), ns(c.CreatedAt))
	if isUniqueViolation(err) {
		return abacus.Errorf(abacus.ECONFLICT, "test clock %q already exists", c.ID)
	}
	return err
}

// FindTestClock returns one clock. ENOTFOUND.
func (s *Store) FindTestClock(ctx context.Context, tenantID, id string) (*abacus.TestClock, error) {
	return findTestClock(ctx, s.r, tenantID, id)
}

func findTestClock(ctx context.Context, q dbReader, tenantID, id string) (*abacus.TestClock, error) {
	c, err := scanTestClock(q.QueryRowContext(ctx, `SELECT `+testClockColumns+` FROM test_clocks WHERE tenant_id = ? AND id = ?`, tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("test clock", id)
	}
	return c, err
}

// ListTestClocks returns the tenant's clocks by id.
func (s *Store) ListTestClocks(ctx context.Context, tenantID string) ([]*abacus.TestClock, error) {
	return queryAll(ctx, s.r, scanTestClock, `SELECT `+testClockColumns+` FROM test_clocks WHERE tenant_id = ? ORDER BY id`, tenantID)
}

// AdvanceTestClock moves a clock forward to t. ENOTFOUND; EINVALID if t is
// before its now.
func (s *Store) AdvanceTestClock(ctx context.Context, tenantID, id string, t time.Time) (*abacus.TestClock, error) {
	var c *abacus.TestClock
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if c, err = findTestClock(ctx, tx, tenantID, id); err != nil {
			return err
		}
		if err := invoicedb.CheckAdvance(c, t); err != nil {
			return err
		}
		c.Now = fromNS(ns(t))
		_, err = tx.ExecContext(ctx, `UPDATE test_clocks SET now = ? WHERE tenant_id = ? AND id = ?`, ns(t), tenantID, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ListTestClockCustomers returns the customers attached to a clock, by id.
// ENOTFOUND if the clock does not exist.
func (s *Store) ListTestClockCustomers(ctx context.Context, tenantID, clockID string) ([]*abacus.Customer, error) {
	if _, err := findTestClock(ctx, s.r, tenantID, clockID); err != nil {
		return nil, err
	}
	scan := func(row rowScanner) (*abacus.Customer, error) { return scanCustomer(row) }
	return queryAll(ctx, s.r, scan, `SELECT `+customerColumns+` FROM customers WHERE tenant_id = ? AND test_clock = ? ORDER BY id`, tenantID, clockID)
}
