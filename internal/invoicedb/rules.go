// Package invoicedb is what the SQLite and PostgreSQL stores share for
// invoices, credit notes and test clocks: input validation, the rules of
// every state change (what may be finalized, voided, deleted, credited,
// and the credit-note money rules), and reading their rows. Keeping it in
// one place means both stores refuse exactly the same inputs with the same
// messages; the stores add only the SQL and the locking.
package invoicedb

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/rating"
	"github.com/cockroachdb/apd/v3"
)

// Limits on free text.
const (
	MaxReasonLength      = 1000 // void reasons and credit-note reasons, in characters
	MaxDescriptionLength = 1000 // a credit-note line, in characters
	MaxNameLength        = 256  // a test clock's name, in characters
	MaxCreditNoteLines   = 100
)

// CheckDraft reports every problem of an invoice given to EnsureInvoice.
func CheckDraft(inv *abacus.Invoice) error {
	var p abacus.Problems
	id(&p, "tenant", inv.TenantID)
	id(&p, "id", inv.ID)
	id(&p, "customer", inv.CustomerID)
	id(&p, "subscription", inv.SubscriptionID)
	if inv.TestClockID != "" {
		id(&p, "test_clock", inv.TestClockID)
	}
	if _, err := rating.LookupCurrency(inv.Currency); err != nil {
		p.Add("currency", "%s", err)
	}
	if inv.Status != "" && inv.Status != abacus.InvoiceDraft {
		p.Add("status", "a new invoice is a draft, got %q", inv.Status)
	}
	if inv.Boundary < 0 {
		p.Add("boundary", "must not be negative, got %d", inv.Boundary)
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"period_start", inv.PeriodStart}, {"issue_at", inv.IssueAt}, {"due_at", inv.DueAt}} {
		if f.t.IsZero() {
			p.Add(f.name, "is required")
		}
	}
	if !inv.IssueAt.IsZero() {
		if inv.PeriodStart.After(inv.IssueAt) {
			p.Add("period_start", "must not be after issue_at")
		}
		if !inv.DueAt.IsZero() && inv.DueAt.Before(inv.IssueAt) {
			p.Add("due_at", "must not be before issue_at")
		}
	}
	if inv.Number != "" || inv.Sequence != 0 || inv.FinalizedAt != nil || inv.Total != "" ||
		inv.VoidedAt != nil || inv.VoidReason != "" || inv.Document != nil {
		p.Add("status", "a draft has no number, finalization, total, void or document yet")
	}
	return p.Err()
}

// CheckFinalization reports every problem of a Finalization.
func CheckFinalization(f *abacus.Finalization) error {
	var p abacus.Problems
	if f.KnownAt.IsZero() {
		p.Add("known_at", "is required")
	}
	if _, err := ParseAmount(f.Total); err != nil {
		p.Add("total", "%s", abacus.ErrorMessage(err))
	}
	if f.Render == nil {
		p.Add("render", "is required")
	}
	return p.Err()
}

// CheckVoidReason reports a missing or overlong void reason.
func CheckVoidReason(reason string) error {
	var p abacus.Problems
	reasonText(&p, "reason", reason)
	return p.Err()
}

// CheckTestClock reports every problem of a clock given to CreateTestClock.
func CheckTestClock(c *abacus.TestClock) error {
	var p abacus.Problems
	id(&p, "tenant", c.TenantID)
	id(&p, "id", c.ID)
	text(&p, "name", c.Name, MaxNameLength)
	if c.Now.IsZero() {
		p.Add("now", "is required")
	}
	return p.Err()
}

// CheckAdvance refuses to move a clock backwards.
func CheckAdvance(c *abacus.TestClock, to time.Time) error {
	if to.Before(c.Now) {
		return abacus.Errorf(abacus.EINVALID, "now: a test clock only moves forward: %s is before its now, %s",
			to.UTC().Format(time.RFC3339Nano), c.Now.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// CheckCreditNote reports every problem of a credit note that can be seen
// without its invoice. When n.Currency is set, line amounts are checked
// against it too, so that a caller who names the currency hears about
// every problem at once.
func CheckCreditNote(n *abacus.CreditNote) error {
	var p abacus.Problems
	id(&p, "tenant", n.TenantID)
	id(&p, "id", n.ID)
	id(&p, "invoice", n.InvoiceID)
	reasonText(&p, "reason", n.Reason)
	var cur *rating.Currency
	if n.Currency != "" {
		if c, err := rating.LookupCurrency(n.Currency); err != nil {
			p.Add("currency", "%s", err)
		} else {
			cur = &c
		}
	}
	checkLines(&p, n.Lines, cur)
	return p.Err()
}

// PrepareCreditNote checks n against the invoice's currency and returns the
// note as it is stored: currency set, every amount and the total written
// with exactly the currency's minor-unit digits ("12.50" for EUR, "500" for
// JPY), the total being the sum of the lines.
func PrepareCreditNote(n *abacus.CreditNote, currency string) (*abacus.CreditNote, error) {
	if err := CheckCreditNote(n); err != nil {
		return nil, err
	}
	cur, err := rating.LookupCurrency(currency)
	if err != nil {
		return nil, err // the invoice was stored with a checked currency
	}
	var p abacus.Problems
	if n.Currency != "" && !strings.EqualFold(n.Currency, cur.Code) {
		p.Add("currency", "the invoice is in %s, not %s", cur.Code, strings.ToUpper(n.Currency))
	}
	amounts := checkLines(&p, n.Lines, &cur)
	if err := p.Err(); err != nil {
		return nil, err
	}
	out := *n
	out.Currency = cur.Code
	out.Lines = make([]abacus.CreditNoteLine, len(n.Lines))
	var total apd.Decimal
	for i, a := range amounts {
		if _, err := abacus.Exact.Add(&total, &total, a); err != nil {
			return nil, abacus.Errorf(abacus.EINVALID, "lines: the total is too large")
		}
		out.Lines[i] = abacus.CreditNoteLine{Description: n.Lines[i].Description, Amount: a.Text('f')}
	}
	out.Total = total.Text('f')
	return &out, nil
}

// CheckCredit refuses a credit note whose total, added to the totals of
// the invoice's earlier credit notes, would exceed the invoice total. The
// ECONFLICT names what can still be credited.
func CheckCredit(inv *abacus.Invoice, credited []*string, add string) error {
	cur, err := rating.LookupCurrency(inv.Currency)
	if err != nil {
		return err
	}
	remaining, err := ParseAmount(inv.Total)
	if err != nil {
		return err
	}
	for _, s := range credited {
		d, err := ParseAmount(*s)
		if err != nil {
			return err
		}
		if _, err := abacus.Exact.Sub(&remaining, &remaining, &d); err != nil {
			return err
		}
	}
	want, err := ParseAmount(add)
	if err != nil {
		return err
	}
	if want.Cmp(&remaining) <= 0 {
		return nil
	}
	if remaining.Sign() < 0 {
		remaining.SetInt64(0)
	}
	var shown apd.Decimal
	if _, err := abacus.Exact.Quantize(&shown, &remaining, -int32(cur.Exponent)); err != nil {
		shown = remaining
	}
	return abacus.Errorf(abacus.ECONFLICT, "credit notes would exceed the total %s %s of invoice %q: %s %s remaining creditable, this note is %s",
		inv.Total, cur.Code, inv.ID, shown.Text('f'), cur.Code, add)
}

// ParseAmount parses a finite decimal amount.
func ParseAmount(s string) (apd.Decimal, error) {
	var d apd.Decimal
	if _, _, err := d.SetString(s); err != nil || d.Form != apd.Finite {
		return d, abacus.Errorf(abacus.EINVALID, "%q is not a decimal number", s)
	}
	return d, nil
}

// checkLines reports the problems of credit-note lines and returns their
// amounts, at the currency's minor unit when cur is known.
func checkLines(p *abacus.Problems, lines []abacus.CreditNoteLine, cur *rating.Currency) []*apd.Decimal {
	switch {
	case len(lines) == 0:
		p.Add("lines", "at least one line is required")
	case len(lines) > MaxCreditNoteLines:
		p.Add("lines", "at most %d lines", MaxCreditNoteLines)
	}
	out := make([]*apd.Decimal, len(lines))
	for i, l := range lines {
		field := "lines[" + strconv.Itoa(i) + "]"
		text(p, field+".description", l.Description, MaxDescriptionLength)
		d, err := abacus.ParseQuantity(l.Amount)
		if err != nil {
			p.Add(field+".amount", "%s", abacus.ErrorMessage(err))
			continue
		}
		if d.Sign() <= 0 {
			p.Add(field+".amount", "must be positive, got %s", l.Amount)
			continue
		}
		if cur == nil {
			continue
		}
		var r apd.Decimal
		if _, err := abacus.Exact.Quantize(&r, &d, -int32(cur.Exponent)); err != nil {
			p.Add(field+".amount", "%s has more fractional digits than %s's minor unit (%d)", l.Amount, cur.Code, cur.Exponent)
			continue
		}
		out[i] = &r
	}
	return out
}

func id(p *abacus.Problems, field, s string) {
	if r := abacus.IDProblem(s, abacus.MaxIDLength); r != "" {
		p.Add(field, "%s", r)
	}
}

func reasonText(p *abacus.Problems, field, s string) {
	if strings.TrimSpace(s) == "" {
		p.Add(field, "is required")
		return
	}
	text(p, field, s, MaxReasonLength)
}

// text reports free text that is too long or that a column cannot hold
// (PostgreSQL text refuses NUL and invalid UTF-8).
func text(p *abacus.Problems, field, s string, max int) {
	switch n := utf8.RuneCountInString(s); {
	case !utf8.ValidString(s):
		p.Add(field, "must be valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		p.Add(field, "must not contain NUL characters")
	case n > max:
		p.Add(field, "must be at most %d characters, got %d", max, n)
	}
}

// CheckFinalize tells whether inv can be finalized with content computed
// as of knownAt, given every invoice of its subscription (siblings, by
// boundary; inv among them, as currently stored). The ECONFLICTs say why
// not: inv is no longer a draft, an earlier boundary is still a draft, or
// an invoice of the subscription was finalized or voided at or after
// knownAt, which the content cannot reflect (it is stale).
func CheckFinalize(inv *abacus.Invoice, siblings []*abacus.Invoice, knownAt time.Time) error {
	if inv.Status != abacus.InvoiceDraft {
		return abacus.Errorf(abacus.ECONFLICT, "invoice %q is %s, not a draft", inv.ID, inv.Status)
	}
	for _, o := range siblings {
		if o.Boundary < inv.Boundary && o.Status == abacus.InvoiceDraft {
			return abacus.Errorf(abacus.ECONFLICT, "invoice %q (boundary %d) of subscription %q is still a draft: earlier boundaries are finalized first",
				o.ID, o.Boundary, o.SubscriptionID)
		}
	}
	for _, o := range siblings {
		for _, at := range []struct {
			what string
			t    *time.Time
		}{{"finalized", o.FinalizedAt}, {"voided", o.VoidedAt}} {
			if at.t != nil && !at.t.Before(knownAt) {
				return abacus.Errorf(abacus.ECONFLICT, "stale: recompute: invoice %q of subscription %q was %s at %s, not before the content's knowledge instant %s",
					o.ID, o.SubscriptionID, at.what, at.t.Format(time.RFC3339Nano), knownAt.UTC().Format(time.RFC3339Nano))
			}
		}
	}
	return nil
}

// Finalize sets the finalization of inv (the sequence-th number of its
// series) and its frozen document, which f.Render returns for a copy of
// inv as it will be stored.
func Finalize(inv *abacus.Invoice, sequence int64, f *abacus.Finalization) error {
	at := time.Unix(0, f.KnownAt.UnixNano()).UTC() // as the column reads back
	inv.Status = abacus.InvoiceFinalized
	inv.Sequence = sequence
	inv.Number = abacus.InvoiceNumber(inv.TestClockID, sequence)
	inv.FinalizedAt = &at
	inv.Total = f.Total
	view := *inv
	view.Document = nil
	doc, err := f.Render(&view)
	if err != nil {
		return fmt.Errorf("render invoice %q: %w", inv.ID, err)
	}
	if len(doc) == 0 || !json.Valid(doc) {
		return fmt.Errorf("render invoice %q: the document is not valid JSON", inv.ID)
	}
	inv.Document = slices.Clone(doc)
	return nil
}

// CheckVoid refuses to void an invoice that is not finalized.
func CheckVoid(inv *abacus.Invoice) error {
	switch inv.Status {
	case abacus.InvoiceFinalized:
		return nil
	case abacus.InvoiceVoid:
		return abacus.Errorf(abacus.ECONFLICT, "invoice %q is already void", inv.ID)
	}
	return abacus.Errorf(abacus.ECONFLICT, "invoice %q is %s, not finalized: only a finalized invoice can be voided", inv.ID, inv.Status)
}

// Void sets the void of inv.
func Void(inv *abacus.Invoice, at time.Time, reason string) {
	at = time.Unix(0, at.UnixNano()).UTC()
	inv.Status, inv.VoidedAt, inv.VoidReason = abacus.InvoiceVoid, &at, reason
}

// CheckDelete refuses to delete an invoice that is not a draft.
func CheckDelete(inv *abacus.Invoice) error {
	if inv.Status != abacus.InvoiceDraft {
		return abacus.Errorf(abacus.ECONFLICT, "invoice %q is %s, not a draft: only a draft can be deleted", inv.ID, inv.Status)
	}
	return nil
}

// CheckCreditable refuses a credit note on an invoice that is not
// finalized.
func CheckCreditable(inv *abacus.Invoice) error {
	if inv.Status != abacus.InvoiceFinalized {
		return abacus.Errorf(abacus.ECONFLICT, "invoice %q is %s, not finalized: credit notes apply to finalized invoices only", inv.ID, inv.Status)
	}
	return nil
}

// UnknownClock is the error for a test clock id that names no clock of the
// tenant in an input.
func UnknownClock(id string) error {
	var p abacus.Problems
	p.Add("test_clock", "test clock %q does not exist", id)
	return p.Err()
}
