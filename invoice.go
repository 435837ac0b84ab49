package abacus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Knowledge time.
//
// Every write that changes what an invoice would say (an aggregated usage
// event, an applied subscription event, a finalized or voided invoice) is
// stamped with the instant Abacus learned it: its "known at". A read "as of
// K" sees exactly the writes stamped at or before K. For that to be exact,
// stamps and barriers follow one protocol in both stores:
//
//   - A stamping transaction first takes the shared knowledge lock, then
//     stamps max(now, mark+1), where mark is the last barrier.
//   - A barrier (Store.Barrier) takes the knowledge lock exclusively, picks
//     K = max(now, mark+1), stores it as the new mark and commits. When it
//     returns, every transaction stamped ≤ K has committed, and every later
//     one stamps > K.
//
// SQLite has one writer, so its lock is the write lock itself; PostgreSQL
// uses a transaction-scoped advisory lock (shared for stamps, exclusive for
// barriers). docs/ARCHITECTURE.md, "Knowledge time", tells why.
type KnowledgeStore interface {
	// Barrier returns a knowledge instant K such that a read "as of K" is
	// stable from now on. now is called after the exclusive lock is held.
	Barrier(ctx context.Context, now func() time.Time) (time.Time, error)
	// LastBarrier returns the K of the last barrier (the Unix epoch if
	// none was taken): a read as of any instant up to it is stable
	// already, without a new barrier (see StableAsOf).
	LastBarrier(ctx context.Context) (time.Time, error)
	// ScanEvents calls fn for each stored (first-received) event of one
	// customer whose type is f.Type, whose event time is in [f.From, f.To)
	// and which was aggregated at or before f.KnownBy (all, when KnownBy is
	// zero), in event time order (then id). A zero From or To leaves that
	// side open. fn must not keep e. EINVALID without a tenant or customer.
	ScanEvents(ctx context.Context, f EventFilter, fn func(e *Event) error) error
}

// EventFilter selects stored events for ScanEvents.
type EventFilter struct {
	TenantID string
	Customer string
	Type     string
	From, To time.Time
	KnownBy  time.Time // zero: everything stored
}

// InvoiceStatus is where an invoice is in its life.
type InvoiceStatus string

// Invoice statuses. A draft becomes finalized once (at its due time, by the
// scheduler); a finalized invoice can only be voided. Nothing else changes.
const (
	InvoiceDraft     InvoiceStatus = "draft"
	InvoiceFinalized InvoiceStatus = "finalized"
	InvoiceVoid      InvoiceStatus = "void"
)

// Invoice is the stored record of one invoice: the invoice a subscription
// issues at one of its billing boundaries.
//
// Boundary i of a subscription is its start (i = 0), then each period
// boundary of its schedule, up to its end. The invoice at boundary i bills
// the period that ends there in arrears (usage, fees in arrears) and the
// period that starts there in advance (fees in advance), plus adjustments
// of earlier periods (package invoice). It is due, and finalized, at
// IssueAt + the tenant's grace.
//
// A draft holds no document: its content is computed when read. Finalizing
// freezes Document, the exact bytes served from then on, and assigns
// Number from the gapless series of the tenant (or of the test clock).
type Invoice struct {
	TenantID       string          `json:"-"`
	ID             string          `json:"id"`
	Status         InvoiceStatus   `json:"status"`
	CustomerID     string          `json:"customer"`
	SubscriptionID string          `json:"subscription"`
	Currency       string          `json:"currency"`
	Boundary       int             `json:"boundary"`     // index of the billing boundary
	PeriodStart    time.Time       `json:"period_start"` // the arrears period [PeriodStart, IssueAt); equal to IssueAt at boundary 0
	IssueAt        time.Time       `json:"issue_at"`     // the boundary
	DueAt          time.Time       `json:"due_at"`       // IssueAt + grace: when it is finalized
	TestClockID    string          `json:"test_clock,omitempty"`
	Series         string          `json:"-"` // numbering series: "" for the tenant's, else the test clock's
	Sequence       int64           `json:"-"` // position in the series, from 1; 0 for drafts
	Number         string          `json:"number,omitempty"`
	FinalizedAt    *time.Time      `json:"finalized_at,omitempty"` // the knowledge instant its content reflects
	Total          string          `json:"total,omitempty"`        // decimal text, set when finalized
	VoidedAt       *time.Time      `json:"voided_at,omitempty"`
	VoidReason     string          `json:"void_reason,omitempty"`
	Document       json.RawMessage `json:"-"` // frozen at finalization
	CreatedAt      time.Time       `json:"created_at"`
}

// InvoiceFilter selects invoices for ListInvoices. Zero fields match all.
type InvoiceFilter struct {
	TenantID       string
	CustomerID     string
	SubscriptionID string
	TestClockID    string
	Status         InvoiceStatus
	DueBy          *time.Time // drafts only: DueAt <= DueBy
	After          string     // id to continue after (ids order the list)
	Limit          int        // 0: no limit
}

// Finalization is what FinalizeInvoice writes.
type Finalization struct {
	KnownAt time.Time // the barrier the content was computed at; becomes FinalizedAt
	Total   string
	// Render returns the frozen document of the invoice once its number is
	// known; it is called inside the finalizing transaction with the
	// invoice as it will be stored (Number, Sequence, FinalizedAt set).
	Render func(inv *Invoice) (json.RawMessage, error)
}

// CreditNote reduces what is owed on a finalized invoice without changing
// it. Credit notes are numbered in their own gapless series per tenant
// ("CN-000001"). The sum of an invoice's credit notes never exceeds its
// total.
type CreditNote struct {
	TenantID  string           `json:"-"`
	ID        string           `json:"id"`
	Number    string           `json:"number"`
	InvoiceID string           `json:"invoice"`
	Currency  string           `json:"currency"`
	Reason    string           `json:"reason"`
	Lines     []CreditNoteLine `json:"lines"`
	Total     string           `json:"total"` // sum of Lines, positive
	CreatedAt time.Time        `json:"created_at"`
}

// CreditNoteLine is one credited amount (positive, in minor-unit precision).
type CreditNoteLine struct {
	Description string `json:"description"`
	Amount      string `json:"amount"`
}

// TestClock is a tenant's simulated clock. Customers attached to it (at
// creation) live in its time: their subscriptions' "now", their events'
// time window and their invoices' schedule follow the clock, which only
// moves when advanced. Knowledge time (as_of) stays real time.
type TestClock struct {
	TenantID  string    `json:"-"`
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Now       time.Time `json:"now"`
	CreatedAt time.Time `json:"created_at"`
}

// InvoiceStore keeps invoices, credit notes and test clocks. Errors are
// *Error: ENOTFOUND, ECONFLICT (a state that forbids the call, with the
// reason), EINVALID.
type InvoiceStore interface {
	// EnsureInvoice stores inv as a draft unless the invoice of its
	// (subscription, boundary) exists, and returns the stored one. Running
	// it twice, or in two processes at once, yields one invoice.
	EnsureInvoice(ctx context.Context, inv *Invoice) (*Invoice, error)
	// FindInvoice returns one invoice (with Document). ENOTFOUND.
	FindInvoice(ctx context.Context, tenantID, id string) (*Invoice, error)
	// ListInvoices returns invoices matching f ordered by id, without
	// Document.
	ListInvoices(ctx context.Context, f InvoiceFilter) ([]*Invoice, error)
	// SubscriptionInvoices returns every invoice of a subscription, with
	// Document, by boundary.
	SubscriptionInvoices(ctx context.Context, tenantID, subscriptionID string) ([]*Invoice, error)
	// FinalizeInvoice finalizes a draft in one transaction: it checks that
	// the invoice is still a draft, that every earlier boundary of its
	// subscription is finalized or void, and that no invoice of the
	// subscription was finalized or voided at or after f.KnownAt (else the
	// content is stale: ECONFLICT); it then takes the next number of the
	// series (formatted by InvoiceNumber) and stores status, number,
	// f.KnownAt, total and the document f.Render returns.
	FinalizeInvoice(ctx context.Context, tenantID, id string, f Finalization) (*Invoice, error)
	// VoidInvoice marks a finalized invoice void, stamped with knowledge
	// time (now is called under the shared knowledge lock). ECONFLICT for
	// a draft or an already void invoice.
	VoidInvoice(ctx context.Context, tenantID, id, reason string, now func() time.Time) (*Invoice, error)
	// DeleteDraft removes a draft (a boundary that turned out to have
	// nothing to bill). ECONFLICT if it is not a draft.
	DeleteDraft(ctx context.Context, tenantID, id string) error

	// CreateCreditNote numbers and stores n against a finalized invoice.
	// ECONFLICT when the invoice is not finalized or the credited total
	// would exceed the invoice total.
	CreateCreditNote(ctx context.Context, n *CreditNote) (*CreditNote, error)
	// ListCreditNotes returns a tenant's credit notes, of one invoice when
	// invoiceID is not empty, by number.
	ListCreditNotes(ctx context.Context, tenantID, invoiceID string) ([]*CreditNote, error)

	// CreateTestClock stores c. ECONFLICT if the id exists.
	CreateTestClock(ctx context.Context, c *TestClock) error
	// FindTestClock returns one clock. ENOTFOUND.
	FindTestClock(ctx context.Context, tenantID, id string) (*TestClock, error)
	// ListTestClocks returns the tenant's clocks by id.
	ListTestClocks(ctx context.Context, tenantID string) ([]*TestClock, error)
	// AdvanceTestClock moves a clock forward to t. EINVALID if t is before
	// its now.
	AdvanceTestClock(ctx context.Context, tenantID, id string, t time.Time) (*TestClock, error)
	// ListTestClockCustomers returns the customers attached to a clock.
	ListTestClockCustomers(ctx context.Context, tenantID, clockID string) ([]*Customer, error)
}

// InvoiceNumber formats the n-th number of a series: "INV-000042" for the
// tenant's own series, "TEST-<clock>-000042" for a test clock's.
func InvoiceNumber(testClockID string, n int64) string {
	if testClockID != "" {
		return fmt.Sprintf("TEST-%s-%06d", testClockID, n)
	}
	return fmt.Sprintf("INV-%06d", n)
}

// CreditNoteNumber formats the n-th credit note number of a tenant.
func CreditNoteNumber(n int64) string { return fmt.Sprintf("CN-%06d", n) }
