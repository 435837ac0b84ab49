package postgres

// Invoices, credit notes and test clocks (abacus.InvoiceStore), on the
// tables of migrations/0004_invoices.sql. The rules both stores apply and
// the row readers are in internal/invoicedb; sqlite/invoices.go has the
// same structure.
//
// Transactions run side by side here (READ COMMITTED), so every
// read-check-write sequence first locks the rows its check reads, and
// reads them after the lock is granted, when they show every commit
// before it:
//
//   - FinalizeInvoice locks every invoice of the subscription, in boundary
//     order (so two finalizers of one subscription cannot deadlock). That
//     serializes it with another finalization or a void of the
//     subscription: the checks for earlier drafts and staleness see them.
//   - VoidInvoice, DeleteDraft and CreateCreditNote lock their invoice
//     row; credit notes of one invoice queue on it, so the over-credit
//     check sees every earlier note.
//   - Numbers come from a counter row incremented in the same transaction
//     (INSERT ... ON CONFLICT DO UPDATE ... RETURNING): its row lock queues
//     finalizations of one series until the holder commits or rolls back,
//     so a number is used exactly once and none is skipped.
//
// Locks are taken in one order: the knowledge lock (voids only), invoice
// rows, then counter rows.

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/invoicedb"
	"github.com/abacus-billing/abacus/internal/rowbody"
	"github.com/jackc/pgx/v5"
)

// Row readers of the shared column lists, typed for queryAll.
func scanInvoice(row pgx.Row) (*abacus.Invoice, error)       { return invoicedb.ScanInvoice(row) }
func scanInvoiceDoc(row pgx.Row) (*abacus.Invoice, error)    { return invoicedb.ScanInvoiceDoc(row) }
func scanCreditNote(row pgx.Row) (*abacus.CreditNote, error) { return invoicedb.ScanCreditNote(row) }
func scanTestClock(row pgx.Row) (*abacus.TestClock, error)   { return invoicedb.ScanTestClock(row) }
func scanString(row pgx.Row) (*string, error)                { return invoicedb.ScanString(row) }

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
// has an invoice, and returns the stored one. Concurrent calls for one
// boundary, from any process, meet on the unique (tenant, subscription,
// boundary) index: the later insert waits for the earlier one to commit
// and then does nothing, and reads the committed row. EINVALID for a bad
// draft or an unknown test clock; ECONFLICT if inv's id is taken by
// another boundary.
func (s *Store) EnsureInvoice(ctx context.Context, inv *abacus.Invoice) (*abacus.Invoice, error) {
	if err := invoicedb.CheckDraft(inv); err != nil {
		return nil, err
	}
	body, draft, err := invoicedb.DraftBody(inv)
	if err != nil {
		return nil, err
	}
	var out *abacus.Invoice
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if inv.TestClockID != "" {
			if _, err := findTestClock(ctx, tx, inv.TenantID, inv.TestClockID, ""); abacus.ErrorCode(err) == abacus.ENOTFOUND {
				return unknownClock(inv.TestClockID)
			} else if err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO invoices(tenant_id, id, customer_id, subscription_id, boundary, test_clock, series, due_at, body, status)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'draft') ON CONFLICT DO NOTHING`,
			inv.TenantID, inv.ID, inv.CustomerID, inv.SubscriptionID, inv.Boundary, inv.TestClockID, draft.Series, ns(inv.DueAt), body); err != nil {
			return err
		}
		out, err = scanInvoiceDoc(tx.QueryRow(ctx, `SELECT `+invoiceColumnsDoc+` FROM invoices WHERE tenant_id = $1 AND subscription_id = $2 AND boundary = $3`,
			inv.TenantID, inv.SubscriptionID, inv.Boundary))
		if errors.Is(err, pgx.ErrNoRows) {
			other, err := findInvoice(ctx, tx, inv.TenantID, inv.ID, "")
			if err != nil {
				return err
			}
			return abacus.Errorf(abacus.ECONFLICT, "invoice id %q is taken by boundary %d of subscription %q", inv.ID, other.Boundary, other.SubscriptionID)
		}
		return err
	})
	return out, err
}

// FindInvoice returns one invoice with its document. ENOTFOUND.
func (s *Store) FindInvoice(ctx context.Context, tenantID, id string) (*abacus.Invoice, error) {
	return findInvoice(ctx, s.pool, tenantID, id, "")
}

// findInvoice reads one invoice; lock is "" or a locking clause.
func findInvoice(ctx context.Context, q dbReader, tenantID, id, lock string) (*abacus.Invoice, error) {
	inv, err := scanInvoiceDoc(q.QueryRow(ctx, `SELECT `+invoiceColumnsDoc+` FROM invoices WHERE tenant_id = $1 AND id = $2 `+lock, tenantID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("invoice", id)
	}
	return inv, err
}

// ListInvoices returns the invoices matching f by id, without documents.
func (s *Store) ListInvoices(ctx context.Context, f abacus.InvoiceFilter) ([]*abacus.Invoice, error) {
	w := rowbody.Where{Numbered: true}
	w.Add(`true`) // every condition is optional
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
	var limit any // NULL: no limit
	if f.Limit > 0 {
		limit = f.Limit
	}
	args := append(w.Args, limit)
	return queryAll(ctx, s.pool, scanInvoice, `SELECT `+invoiceColumns+` FROM invoices WHERE `+w.String()+` ORDER BY id, tenant_id LIMIT $`+strconv.Itoa(len(args)),
		args...)
}

// SubscriptionInvoices returns every invoice of a subscription with its
// document, by boundary.
func (s *Store) SubscriptionInvoices(ctx context.Context, tenantID, subscriptionID string) ([]*abacus.Invoice, error) {
	return queryAll(ctx, s.pool, scanInvoiceDoc, `SELECT `+invoiceColumnsDoc+` FROM invoices WHERE tenant_id = $1 AND subscription_id = $2 ORDER BY boundary`,
		tenantID, subscriptionID)
}

// FinalizeInvoice finalizes a draft in one transaction: it locks the
// subscription's invoices, applies the checks of invoicedb.CheckFinalize,
// takes the next number of the series and stores the document f.Render
// returns. A failure anywhere rolls the counter back with everything
// else, so no number is lost. Render runs while the locks are held: it
// must not call the store.
func (s *Store) FinalizeInvoice(ctx context.Context, tenantID, id string, f abacus.Finalization) (*abacus.Invoice, error) {
	if err := invoicedb.CheckFinalization(&f); err != nil {
		return nil, err
	}
	var inv *abacus.Invoice
	err := s.tx(ctx, func(tx pgx.Tx) error {
		found, err := findInvoice(ctx, tx, tenantID, id, "")
		if err != nil {
			return err
		}
		// Locked rows are returned as last committed, so inv and the
		// checks below see whatever a transaction holding them committed.
		siblings, err := queryAll(ctx, tx, scanInvoice, `SELECT `+invoiceColumns+` FROM invoices
			WHERE tenant_id = $1 AND subscription_id = $2 ORDER BY boundary FOR UPDATE`, tenantID, found.SubscriptionID)
		if err != nil {
			return err
		}
		for _, o := range siblings {
			if o.ID == id {
				inv = o
			}
		}
		if inv == nil {
			return notFound("invoice", id) // deleted while we waited
		}
		if err := invoicedb.CheckFinalize(inv, siblings, f.KnownAt); err != nil {
			return err
		}
		var seq int64
		if err := tx.QueryRow(ctx, `INSERT INTO invoice_counters(tenant_id, series, last) VALUES ($1, $2, 1)
			ON CONFLICT (tenant_id, series) DO UPDATE SET last = invoice_counters.last + 1 RETURNING last`, tenantID, inv.Series).Scan(&seq); err != nil {
			return err
		}
		if err := invoicedb.Finalize(inv, seq, &f); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE invoices SET status = $1, sequence = $2, number = $3, finalized_at = $4, total = $5, document = $6
			WHERE tenant_id = $7 AND id = $8`,
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
	err := s.tx(ctx, func(tx pgx.Tx) error {
		at, err := knowledgeStamp(ctx, tx, now)
		if err != nil {
			return err
		}
		if inv, err = findInvoice(ctx, tx, tenantID, id, "FOR UPDATE"); err != nil {
			return err
		}
		if err := invoicedb.CheckVoid(inv); err != nil {
			return err
		}
		invoicedb.Void(inv, at, reason)
		_, err = tx.Exec(ctx, `UPDATE invoices SET status = $1, voided_at = $2, void_reason = $3 WHERE tenant_id = $4 AND id = $5`,
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
	return s.tx(ctx, func(tx pgx.Tx) error {
		inv, err := findInvoice(ctx, tx, tenantID, id, "FOR UPDATE")
		if err != nil {
			return err
		}
		if err := invoicedb.CheckDelete(inv); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM invoices WHERE tenant_id = $1 AND id = $2`, tenantID, id)
		return err
	})
}

// Credit notes.

// CreateCreditNote numbers and stores n against a finalized invoice and
// returns it as stored (amounts at the currency's minor unit, total the
// sum of the lines). The invoice's row lock queues credit notes of one
// invoice, so the over-credit check sees every earlier one. EINVALID;
// ENOTFOUND for the invoice; ECONFLICT when the invoice is not finalized,
// the credited total would exceed its total, or the id exists.
func (s *Store) CreateCreditNote(ctx context.Context, n *abacus.CreditNote) (*abacus.CreditNote, error) {
	if err := invoicedb.CheckCreditNote(n); err != nil {
		return nil, err
	}
	var out *abacus.CreditNote
	err := s.tx(ctx, func(tx pgx.Tx) error {
		inv, err := findInvoice(ctx, tx, n.TenantID, n.InvoiceID, "FOR UPDATE")
		if err != nil {
			return err
		}
		if err := invoicedb.CheckCreditable(inv); err != nil {
			return err
		}
		if out, err = invoicedb.PrepareCreditNote(n, inv.Currency); err != nil {
			return err
		}
		credited, err := queryAll(ctx, tx, scanString, `SELECT total FROM credit_notes WHERE tenant_id = $1 AND invoice_id = $2`, n.TenantID, n.InvoiceID)
		if err != nil {
			return err
		}
		if err := invoicedb.CheckCredit(inv, credited, out.Total); err != nil {
			return err
		}
		var seq int64
		if err := tx.QueryRow(ctx, `INSERT INTO credit_note_counters(tenant_id, last) VALUES ($1, 1)
			ON CONFLICT (tenant_id) DO UPDATE SET last = credit_note_counters.last + 1 RETURNING last`, n.TenantID).Scan(&seq); err != nil {
			return err
		}
		body, err := invoicedb.CreditNoteBody(out, seq)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO credit_notes(tenant_id, id, sequence, invoice_id, total, body) VALUES ($1, $2, $3, $4, $5, $6)`,
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
	w := rowbody.Where{Numbered: true}
	w.Add(`tenant_id = ?`, tenantID)
	if invoiceID != "" {
		w.Add(`invoice_id = ?`, invoiceID)
	}
	return queryAll(ctx, s.pool, scanCreditNote, `SELECT `+invoicedb.CreditNoteColumns+` FROM credit_notes WHERE `+w.String()+` ORDER BY sequence`, w.Args...)
}

// Test clocks.

// CreateTestClock stores c. EINVALID; ECONFLICT if the id exists.
func (s *Store) CreateTestClock(ctx context.Context, c *abacus.TestClock) error {
	if err := invoicedb.CheckTestClock(c); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO test_clocks(`+testClockColumns+`) VALUES ($1, $2, $3, $4, $5)`,
		c.TenantID, c.ID, c.Name, ns(c.Now), ns(c.CreatedAt))
	if isUniqueViolation(err) {
		return abacus.Errorf(abacus.ECONFLICT, "test clock %q already exists", c.ID)
	}
	return err
}

// FindTestClock returns one clock. ENOTFOUND.
func (s *Store) FindTestClock(ctx context.Context, tenantID, id string) (*abacus.TestClock, error) {
	return findTestClock(ctx, s.pool, tenantID, id, "")
}

// findTestClock reads one clock; lock is "" or a locking clause.
func findTestClock(ctx context.Context, q dbReader, tenantID, id, lock string) (*abacus.TestClock, error) {
	c, err := scanTestClock(q.QueryRow(ctx, `SELECT `+testClockColumns+` FROM test_clocks WHERE tenant_id = $1 AND id = $2 `+lock, tenantID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("test clock", id)
	}
	return c, err
}

// ListTestClocks returns the tenant's clocks by id.
func (s *Store) ListTestClocks(ctx context.Context, tenantID string) ([]*abacus.TestClock, error) {
	return queryAll(ctx, s.pool, scanTestClock, `SELECT `+testClockColumns+` FROM test_clocks WHERE tenant_id = $1 ORDER BY id`, tenantID)
}

// AdvanceTestClock moves a clock forward to t. The clock's row lock
// orders concurrent advances, so a clock never moves back. ENOTFOUND;
// EINVALID if t is before its now.
func (s *Store) AdvanceTestClock(ctx context.Context, tenantID, id string, t time.Time) (*abacus.TestClock, error) {
	var c *abacus.TestClock
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		if c, err = findTestClock(ctx, tx, tenantID, id, "FOR UPDATE"); err != nil {
			return err
		}
		if err := invoicedb.CheckAdvance(c, t); err != nil {
			return err
		}
		c.Now = fromNS(ns(t))
		_, err = tx.Exec(ctx, `UPDATE test_clocks SET now = $1 WHERE tenant_id = $2 AND id = $3`, ns(t), tenantID, id)
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
	if _, err := findTestClock(ctx, s.pool, tenantID, clockID, ""); err != nil {
		return nil, err
	}
	return queryAll(ctx, s.pool, scanCustomer, `SELECT `+customerColumns+` FROM customers WHERE tenant_id = $1 AND test_clock = $2 ORDER BY id`, tenantID, clockID)
}
