package invoicedb

import (
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/rowbody"
)

// Scanner is a row of either store (*sql.Row, *sql.Rows, pgx.Row).
type Scanner interface{ Scan(dest ...any) error }

// Column lists, the same in both stores' schemas.
const (
	InvoiceColumns    = `tenant_id, series, body, status, sequence, number, finalized_at, total, voided_at, void_reason`
	InvoiceColumnsDoc = InvoiceColumns + `, document` // lists leave the document out
	CreditNoteColumns = `tenant_id, body`
	TestClockColumns  = `tenant_id, id, name, now, created_at`
)

// ScanInvoice reads a row of InvoiceColumns.
func ScanInvoice(row Scanner) (*abacus.Invoice, error) { return scanInvoice(row, false) }

// ScanInvoiceDoc reads a row of InvoiceColumnsDoc.
func ScanInvoiceDoc(row Scanner) (*abacus.Invoice, error) { return scanInvoice(row, true) }

// scanInvoice reads the body (the draft as inserted), then every field
// that changes after the insert from its column.
func scanInvoice(row Scanner, withDoc bool) (*abacus.Invoice, error) {
	var inv abacus.Invoice
	var tenantID, series, body, status, voidReason string
	var seq, finalized, voided *int64
	var number, total, doc *string
	dest := []any{&tenantID, &series, &body, &status, &seq, &number, &finalized, &total, &voided, &voidReason}
	if withDoc {
		dest = append(dest, &doc)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	if err := rowbody.Decode(body, &inv); err != nil {
		return nil, err
	}
	inv.TenantID, inv.Series, inv.Status, inv.VoidReason = tenantID, series, abacus.InvoiceStatus(status), voidReason
	inv.FinalizedAt, inv.VoidedAt = rowbody.FromNullNS(finalized), rowbody.FromNullNS(voided)
	inv.Sequence, inv.Number, inv.Total, inv.Document = 0, "", "", nil
	if seq != nil {
		inv.Sequence = *seq
	}
	if number != nil {
		inv.Number = *number
	}
	if total != nil {
		inv.Total = *total
	}
	if doc != nil {
		inv.Document = []byte(*doc)
	}
	return &inv, nil
}

// DraftBody returns the body column of a new draft, and the draft as
// stored.
func DraftBody(inv *abacus.Invoice) (string, *abacus.Invoice, error) {
	draft := *inv
	draft.Status, draft.Series = abacus.InvoiceDraft, inv.TestClockID
	body, err := rowbody.Encode(&draft)
	return body, &draft, err
}

// ScanCreditNote reads a row of CreditNoteColumns.
func ScanCreditNote(row Scanner) (*abacus.CreditNote, error) {
	var n abacus.CreditNote
	var tenantID, body string
	if err := row.Scan(&tenantID, &body); err != nil {
		return nil, err
	}
	if err := rowbody.Decode(body, &n); err != nil {
		return nil, err
	}
	n.TenantID = tenantID
	return &n, nil
}

// ScanTestClock reads a row of TestClockColumns.
func ScanTestClock(row Scanner) (*abacus.TestClock, error) {
	var c abacus.TestClock
	var now, created int64
	if err := row.Scan(&c.TenantID, &c.ID, &c.Name, &now, &created); err != nil {
		return nil, err
	}
	c.Now, c.CreatedAt = time.Unix(0, now).UTC(), time.Unix(0, created).UTC()
	return &c, nil
}

// ScanString reads a row of one text column.
func ScanString(row Scanner) (*string, error) {
	var s string
	return &s, row.Scan(&s)
}

// CreditNoteBody numbers n as the sequence-th credit note of its tenant and
// returns its body column.
func CreditNoteBody(n *abacus.CreditNote, sequence int64) (string, error) {
	n.Number = abacus.CreditNoteNumber(sequence)
	n.CreatedAt = n.CreatedAt.Round(0).UTC() // as the body reads back
	return rowbody.Encode(n)
}
