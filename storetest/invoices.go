package storetest

// Conformance tests of abacus.InvoiceStore: invoices, credit notes, number
// series and test clocks. ExerciseInvoices runs them; it needs more of an
// implementation than Exercise does (two stores on one database, and raw
// SQL behind the store's back), so it takes an InvoiceHarness.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
)

// InvoiceHarness is how the invoice suite reaches one store implementation.
type InvoiceHarness struct {
	// Open returns a fresh, empty, migrated store; the suite closes it.
	Open func(t *testing.T) abacus.Store
	// OpenPair returns two stores on one fresh database, opened as two
	// processes would open it; the suite closes them.
	OpenPair func(t *testing.T) (abacus.Store, abacus.Store)
	// Exec runs one SQL statement on s's database behind the store's
	// back. The suite's statements are written to mean the same in every
	// dialect.
	Exec func(ctx context.Context, s abacus.Store, query string) error
}

// ExerciseInvoices runs the invoice suite.
func ExerciseInvoices(t *testing.T, h InvoiceHarness) {
	open := h.Open
	t.Run("TestClocks", func(t *testing.T) { testTestClocks(t, open(t)) })
	t.Run("CustomerTestClock", func(t *testing.T) { testCustomerTestClock(t, open(t)) })
	t.Run("EnsureInvoice", func(t *testing.T) { testEnsureInvoice(t, open(t)) })
	t.Run("EnsureInvoiceInvalid", func(t *testing.T) { testEnsureInvoiceInvalid(t, open(t)) })
	t.Run("ListInvoices", func(t *testing.T) { testListInvoices(t, open(t)) })
	t.Run("FinalizeInvoice", func(t *testing.T) { testFinalizeInvoice(t, open(t)) })
	t.Run("FinalizeOrder", func(t *testing.T) { testFinalizeOrder(t, open(t)) })
	t.Run("FinalizeStale", func(t *testing.T) { testFinalizeStale(t, open(t)) })
	t.Run("FinalizeFailureLeavesNoGap", func(t *testing.T) { testFinalizeFailureLeavesNoGap(t, open(t)) })
	t.Run("NumberSeries", func(t *testing.T) { testNumberSeries(t, open(t)) })
	t.Run("VoidInvoice", func(t *testing.T) { testVoidInvoice(t, open(t)) })
	t.Run("DeleteDraft", func(t *testing.T) { testDeleteDraft(t, open(t)) })
	t.Run("CreditNotes", func(t *testing.T) { testCreditNotes(t, open(t)) })
	t.Run("CreditNotesInvalid", func(t *testing.T) { testCreditNotesInvalid(t, open(t)) })
	t.Run("ImmutableByDatabase", func(t *testing.T) { testImmutableByDatabase(t, open(t), h.Exec) })
	t.Run("ConcurrentFinalize", func(t *testing.T) { testConcurrentFinalize(t, h.OpenPair) })
	t.Run("ConcurrentEnsure", func(t *testing.T) { testConcurrentEnsure(t, h.OpenPair) })
	t.Run("ConcurrentCreditNotes", func(t *testing.T) { testConcurrentCreditNotes(t, h.OpenPair) })
}

// wantError fails the test unless err has the code and exactly the
// client-safe message.
func wantError(t *testing.T, err error, code, message string) {
	t.Helper()
	if got := abacus.ErrorCode(err); got != code || abacus.ErrorMessage(err) != message {
		t.Fatalf("error = %v\nwant %s: %s", err, code, message)
	}
}

// draft returns the draft invoice of a subscription's boundary: monthly
// boundaries from t0, due three hours after.
func draft(tenant, id, sub string, boundary int) *abacus.Invoice {
	issue := t0.AddDate(0, boundary, 0)
	start := issue.AddDate(0, -1, 0)
	if boundary == 0 {
		start = issue
	}
	return &abacus.Invoice{
		TenantID: tenant, ID: id, CustomerID: "c-1", SubscriptionID: sub, Currency: "EUR", Boundary: boundary,
		PeriodStart: start, IssueAt: issue, DueAt: issue.Add(3 * time.Hour), CreatedAt: issue.Add(-time.Hour + 123),
	}
}

// stored is inv as EnsureInvoice stores it.
func stored(inv *abacus.Invoice) *abacus.Invoice {
	out := *inv
	out.Status, out.Series = abacus.InvoiceDraft, inv.TestClockID
	return &out
}

func ensure(t *testing.T, s abacus.Store, inv *abacus.Invoice) *abacus.Invoice {
	t.Helper()
	got, err := s.EnsureInvoice(context.Background(), inv)
	must(t, err)
	same(t, "ensured "+inv.ID, got, stored(inv))
	return got
}

// document renders the frozen document of an invoice the way an invoice
// engine would, with characters JSON encoders like to escape and spacing
// they like to remove: stores must keep it byte for byte.
func document(inv *abacus.Invoice) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{ "number": %q, "sequence": %d, "status": %q, "total": %q, "finalized_at": %q, "note": "<b>&amp;</b>" }`,
		inv.Number, inv.Sequence, inv.Status, inv.Total, inv.FinalizedAt.Format(time.RFC3339Nano)))
}

// finalization returns a Finalization at knownAt whose Render records
// what it saw.
func finalization(knownAt time.Time, total string, seen *abacus.Invoice) abacus.Finalization {
	return abacus.Finalization{KnownAt: knownAt, Total: total, Render: func(inv *abacus.Invoice) (json.RawMessage, error) {
		if seen != nil {
			*seen = *inv
		}
		return document(inv), nil
	}}
}

func finalize(t *testing.T, s abacus.Store, tenant, id string, knownAt time.Time, total string) *abacus.Invoice {
	t.Helper()
	inv, err := s.FinalizeInvoice(context.Background(), tenant, id, finalization(knownAt, total, nil))
	must(t, err)
	return inv
}

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }

func ids(invs []*abacus.Invoice) string {
	var out []string
	for _, inv := range invs {
		out = append(out, inv.ID)
	}
	return strings.Join(out, " ")
}

func testTestClocks(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	b := &abacus.TestClock{TenantID: "acme", ID: "clk-b", Name: "Renewal <test>", Now: t0.Add(123456789), CreatedAt: t0}
	a := &abacus.TestClock{TenantID: "acme", ID: "clk-a", Now: t0, CreatedAt: t0.Add(time.Second)}
	must(t, s.CreateTestClock(ctx, b))
	must(t, s.CreateTestClock(ctx, a))
	must(t, s.CreateTestClock(ctx, &abacus.TestClock{TenantID: "other", ID: "clk-a", Now: t0, CreatedAt: t0}))
	wantError(t, s.CreateTestClock(ctx, &abacus.TestClock{TenantID: "acme", ID: "clk-a", Now: t0}), abacus.ECONFLICT, `test clock "clk-a" already exists`)
	wantError(t, s.CreateTestClock(ctx, &abacus.TestClock{TenantID: "acme", Name: strings.Repeat("n", 257)}), abacus.EINVALID,
		"id: is required; name: must be at most 256 characters, got 257; now: is required")

	got, err := s.FindTestClock(ctx, "acme", "clk-b")
	must(t, err)
	same(t, "clock", got, b)
	_, err = s.FindTestClock(ctx, "acme", "nope")
	wantError(t, err, abacus.ENOTFOUND, `test clock "nope" not found`)
	list, err := s.ListTestClocks(ctx, "acme")
	must(t, err)
	same(t, "clocks", list, []*abacus.TestClock{a, b})
	none, err := s.ListTestClocks(ctx, "none")
	empty(t, "clocks of a tenant without any", none, err)

	moved, err := s.AdvanceTestClock(ctx, "acme", "clk-a", t0.AddDate(0, 1, 0))
	must(t, err)
	want := *a
	want.Now = t0.AddDate(0, 1, 0)
	same(t, "advanced", moved, &want)
	got, err = s.FindTestClock(ctx, "acme", "clk-a")
	must(t, err)
	same(t, "advanced, read back", got, &want)
	_, err = s.AdvanceTestClock(ctx, "acme", "clk-a", t0.AddDate(0, 1, 0)) // standing still is allowed
	must(t, err)
	_, err = s.AdvanceTestClock(ctx, "acme", "clk-a", t0.AddDate(0, 1, 0).Add(-1))
	wantError(t, err, abacus.EINVALID, "now: a test clock only moves forward: 2026-04-01T11:59:59.999999999Z is before its now, 2026-04-01T12:00:00Z")
	_, err = s.AdvanceTestClock(ctx, "acme", "nope", t0)
	wantError(t, err, abacus.ENOTFOUND, `test clock "nope" not found`)
	got, err = s.FindTestClock(ctx, "other", "clk-a")
	must(t, err)
	if !got.Now.Equal(t0) {
		t.Fatalf("other tenant's clock moved to %s", got.Now)
	}
}

func testCustomerTestClock(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	must(t, s.CreateTestClock(ctx, &abacus.TestClock{TenantID: "acme", ID: "clk", Now: t0, CreatedAt: t0}))
	must(t, s.CreateTestClock(ctx, &abacus.TestClock{TenantID: "other", ID: "theirs", Now: t0, CreatedAt: t0}))
	customer := func(id, clock string) *abacus.Customer {
		return &abacus.Customer{TenantID: "acme", ID: id, Name: id, TimeZone: "UTC", TestClock: clock, CreatedAt: t0}
	}
	wantError(t, s.CreateCustomer(ctx, customer("c-x", "nope")), abacus.EINVALID, `test_clock: test clock "nope" does not exist`)
	wantError(t, s.CreateCustomer(ctx, customer("c-x", "theirs")), abacus.EINVALID, `test_clock: test clock "theirs" does not exist`)
	_, err := s.FindCustomer(ctx, "acme", "c-x")
	wantCode(t, err, abacus.ENOTFOUND)

	c2, c1, plain := customer("c-2", "clk"), customer("c-1", "clk"), customer("c-0", "")
	for _, c := range []*abacus.Customer{c2, c1, plain} {
		must(t, s.CreateCustomer(ctx, c))
	}
	wantError(t, s.CreateCustomer(ctx, customer("c-1", "clk")), abacus.ECONFLICT, `customer "c-1" already exists`)
	got, err := s.FindCustomer(ctx, "acme", "c-1")
	must(t, err)
	same(t, "customer on a clock", got, c1)
	got, err = s.FindCustomer(ctx, "acme", "c-0")
	must(t, err)
	same(t, "customer without a clock", got, plain)
	all, err := s.ListCustomers(ctx, "acme", "", 10)
	must(t, err)
	same(t, "customers", all, []*abacus.Customer{plain, c1, c2})
	onClock, err := s.ListTestClockCustomers(ctx, "acme", "clk")
	must(t, err)
	same(t, "customers on the clock", onClock, []*abacus.Customer{c1, c2})
	none, err := s.ListTestClockCustomers(ctx, "other", "theirs")
	empty(t, "customers on another tenant's clock", none, err)
	_, err = s.ListTestClockCustomers(ctx, "acme", "theirs")
	wantError(t, err, abacus.ENOTFOUND, `test clock "theirs" not found`)
}

func testEnsureInvoice(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	must(t, s.CreateTestClock(ctx, &abacus.TestClock{TenantID: "acme", ID: "clk", Now: t0, CreatedAt: t0}))

	inv := draft("acme", "inv-1", "sub-1", 0)
	first := ensure(t, s, inv)
	// Again, even under another id and with other content: the stored
	// invoice of the boundary is returned, unchanged.
	again := draft("acme", "inv-other", "sub-1", 0)
	again.Currency = "USD"
	got, err := s.EnsureInvoice(ctx, again)
	must(t, err)
	same(t, "ensured twice", got, first)
	_, err = s.FindInvoice(ctx, "acme", "inv-other")
	wantCode(t, err, abacus.ENOTFOUND)
	// An id taken by another boundary.
	_, err = s.EnsureInvoice(ctx, draft("acme", "inv-1", "sub-1", 1))
	wantError(t, err, abacus.ECONFLICT, `invoice id "inv-1" is taken by boundary 0 of subscription "sub-1"`)
	_, err = s.EnsureInvoice(ctx, draft("acme", "inv-1", "sub-2", 0))
	wantError(t, err, abacus.ECONFLICT, `invoice id "inv-1" is taken by boundary 0 of subscription "sub-1"`)
	// The same ids in another tenant are another invoice.
	ensure(t, s, draft("other", "inv-1", "sub-1", 0))

	// A test clock's invoice numbers in the clock's series.
	onClock := draft("acme", "inv-clk", "sub-clk", 0)
	onClock.TestClockID = "clk"
	got = ensure(t, s, onClock)
	if got.Series != "clk" {
		t.Fatalf("series of a test-clock invoice = %q", got.Series)
	}
	unknown := draft("acme", "inv-x", "sub-x", 0)
	unknown.TestClockID = "nope"
	_, err = s.EnsureInvoice(ctx, unknown)
	wantError(t, err, abacus.EINVALID, `test_clock: test clock "nope" does not exist`)

	found, err := s.FindInvoice(ctx, "acme", "inv-1")
	must(t, err)
	same(t, "found", found, first)
	_, err = s.FindInvoice(ctx, "other", "inv-clk")
	wantError(t, err, abacus.ENOTFOUND, `invoice "inv-clk" not found`)
}

func testEnsureInvoiceInvalid(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	for _, c := range []struct {
		name string
		edit func(inv *abacus.Invoice)
		want string
	}{
		{"ids", func(inv *abacus.Invoice) {
			inv.ID, inv.CustomerID, inv.SubscriptionID = "", "a\x00b", strings.Repeat("s", 257)
		},
			"id: is required; customer: must not contain control characters; subscription: must be at most 256 bytes, got 257"},
		{"currency", func(inv *abacus.Invoice) { inv.Currency = "XXX" },
			`currency: unknown currency "XXX" (want an active ISO 4217 code such as USD)`},
		{"boundary", func(inv *abacus.Invoice) { inv.Boundary = -1 }, "boundary: must not be negative, got -1"},
		{"issue", func(inv *abacus.Invoice) { inv.IssueAt = time.Time{} }, "issue_at: is required"},
		{"times", func(inv *abacus.Invoice) {
			inv.PeriodStart, inv.IssueAt, inv.DueAt = time.Time{}, time.Time{}, time.Time{}
		},
			"period_start: is required; issue_at: is required; due_at: is required"},
		{"period", func(inv *abacus.Invoice) { inv.PeriodStart = inv.IssueAt.Add(1) }, "period_start: must not be after issue_at"},
		{"due", func(inv *abacus.Invoice) { inv.DueAt = inv.IssueAt.Add(-1) }, "due_at: must not be before issue_at"},
		{"not a draft", func(inv *abacus.Invoice) { inv.Status, inv.Number = abacus.InvoiceFinalized, "INV-000001" },
			`status: a new invoice is a draft, got "finalized"; status: a draft has no number, finalization, total, void or document yet`},
	} {
		inv := draft("acme", "inv-1", "sub-1", 1)
		c.edit(inv)
		_, err := s.EnsureInvoice(ctx, inv)
		if abacus.ErrorCode(err) != abacus.EINVALID || abacus.ErrorMessage(err) != c.want {
			t.Errorf("%s: error = %v\nwant invalid: %s", c.name, err, c.want)
		}
	}
	list, err := s.ListInvoices(ctx, abacus.InvoiceFilter{})
	empty(t, "invoices after invalid ones", list, err)
}

func testListInvoices(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	must(t, s.CreateTestClock(ctx, &abacus.TestClock{TenantID: "acme", ID: "clk", Now: t0, CreatedAt: t0}))
	// a-0, a-1, a-2: subscription a of customer c-1; b-0: subscription b
	// of customer c-2 on the clock; and one invoice of another tenant.
	var a []*abacus.Invoice
	for i := range 3 {
		a = append(a, ensure(t, s, draft("acme", fmt.Sprint("a-", i), "sub-a", i)))
	}
	bDraft := draft("acme", "b-0", "sub-b", 0)
	bDraft.CustomerID, bDraft.TestClockID = "c-2", "clk"
	b := ensure(t, s, bDraft)
	o := ensure(t, s, draft("other", "o-0", "sub-a", 0))
	a0 := finalize(t, s, "acme", "a-0", t0.Add(time.Hour), "10.00")
	a0.Document = nil // lists leave documents out

	list := func(f abacus.InvoiceFilter) string {
		t.Helper()
		got, err := s.ListInvoices(ctx, f)
		must(t, err)
		for _, inv := range got {
			if inv.Document != nil {
				t.Fatalf("ListInvoices returned the document of %s", inv.ID)
			}
		}
		return ids(got)
	}
	got, err := s.ListInvoices(ctx, abacus.InvoiceFilter{TenantID: "acme"})
	must(t, err)
	same(t, "acme's invoices", got, []*abacus.Invoice{a0, a[1], a[2], b})
	for _, c := range []struct {
		f    abacus.InvoiceFilter
		want string
	}{
		{abacus.InvoiceFilter{}, "a-0 a-1 a-2 b-0 o-0"}, // every tenant: the scheduler's view
		{abacus.InvoiceFilter{TenantID: "other"}, "o-0"},
		{abacus.InvoiceFilter{TenantID: "acme", CustomerID: "c-2"}, "b-0"},
		{abacus.InvoiceFilter{TenantID: "acme", SubscriptionID: "sub-a"}, "a-0 a-1 a-2"},
		{abacus.InvoiceFilter{SubscriptionID: "sub-a"}, "a-0 a-1 a-2 o-0"},
		{abacus.InvoiceFilter{TenantID: "acme", TestClockID: "clk"}, "b-0"},
		{abacus.InvoiceFilter{TenantID: "acme", Status: abacus.InvoiceFinalized}, "a-0"},
		{abacus.InvoiceFilter{TenantID: "acme", Status: abacus.InvoiceDraft}, "a-1 a-2 b-0"},
		{abacus.InvoiceFilter{TenantID: "acme", Status: abacus.InvoiceVoid}, ""},
		// Due drafts: a-1 is due at t0+1 month+3h; a-0 is due earlier but final.
		{abacus.InvoiceFilter{DueBy: ptr(a[1].DueAt)}, "a-1 b-0 o-0"},
		{abacus.InvoiceFilter{DueBy: ptr(a[1].DueAt.Add(-1))}, "b-0 o-0"},
		{abacus.InvoiceFilter{TenantID: "acme", DueBy: ptr(a[2].DueAt)}, "a-1 a-2 b-0"},
		{abacus.InvoiceFilter{TenantID: "acme", After: "a-0", Limit: 2}, "a-1 a-2"},
		{abacus.InvoiceFilter{TenantID: "acme", After: "a-2", Limit: 2}, "b-0"},
		{abacus.InvoiceFilter{TenantID: "acme", After: "b-0", Limit: 2}, ""},
		{abacus.InvoiceFilter{TenantID: "acme", Limit: 1}, "a-0"},
	} {
		if got := list(c.f); got != c.want {
			t.Errorf("ListInvoices(%+v) = %q, want %q", c.f, got, c.want)
		}
	}

	subs, err := s.SubscriptionInvoices(ctx, "acme", "sub-a")
	must(t, err)
	full, err := s.FindInvoice(ctx, "acme", "a-0")
	must(t, err)
	same(t, "subscription's invoices, with documents", subs, []*abacus.Invoice{full, a[1], a[2]})
	subs, err = s.SubscriptionInvoices(ctx, "other", "sub-a")
	must(t, err)
	same(t, "other tenant's subscription", subs, []*abacus.Invoice{o})
	none, err := s.SubscriptionInvoices(ctx, "acme", "nope")
	empty(t, "invoices of an unknown subscription", none, err)
}

func testFinalizeInvoice(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	d := ensure(t, s, draft("acme", "inv-1", "sub-1", 0))
	knownAt := t0.Add(90 * time.Minute).Add(7)

	var seen abacus.Invoice
	got, err := s.FinalizeInvoice(ctx, "acme", "inv-1", finalization(knownAt, "1234.50", &seen))
	must(t, err)
	want := *d
	want.Status, want.Sequence, want.Number, want.FinalizedAt, want.Total = abacus.InvoiceFinalized, 1, "INV-000001", ptr(knownAt), "1234.50"
	rendered := want // Render sees the invoice as stored, less the document
	same(t, "invoice Render saw", &seen, &rendered)
	want.Document = document(&want)
	same(t, "finalized", got, &want)
	found, err := s.FindInvoice(ctx, "acme", "inv-1")
	must(t, err)
	same(t, "finalized, read back", found, &want)
	if string(found.Document) != string(document(&rendered)) {
		t.Fatalf("document not kept byte for byte:\n got %s\nwant %s", found.Document, document(&rendered))
	}

	_, err = s.FinalizeInvoice(ctx, "acme", "inv-1", finalization(knownAt.Add(time.Hour), "1", nil))
	wantError(t, err, abacus.ECONFLICT, `invoice "inv-1" is finalized, not a draft`)
	_, err = s.FinalizeInvoice(ctx, "acme", "nope", finalization(knownAt, "1", nil))
	wantError(t, err, abacus.ENOTFOUND, `invoice "nope" not found`)
	_, err = s.FinalizeInvoice(ctx, "other", "inv-1", finalization(knownAt, "1", nil))
	wantError(t, err, abacus.ENOTFOUND, `invoice "inv-1" not found`)
	ensure(t, s, draft("acme", "inv-2", "sub-2", 0))
	_, err = s.FinalizeInvoice(ctx, "acme", "inv-2", abacus.Finalization{Total: "1.2.3"})
	wantError(t, err, abacus.EINVALID, `known_at: is required; total: "1.2.3" is not a decimal number; render: is required`)
	_, err = s.FinalizeInvoice(ctx, "acme", "inv-2", finalization(knownAt, "NaN", nil))
	wantError(t, err, abacus.EINVALID, `total: "NaN" is not a decimal number`)

	// A void invoice is not a draft either.
	_, err = s.VoidInvoice(ctx, "acme", "inv-1", "duplicate", fixedNow(knownAt.Add(time.Hour)))
	must(t, err)
	_, err = s.FinalizeInvoice(ctx, "acme", "inv-1", finalization(knownAt.Add(2*time.Hour), "1", nil))
	wantError(t, err, abacus.ECONFLICT, `invoice "inv-1" is void, not a draft`)
}

// testFinalizeOrder: boundaries of a subscription finalize in order; a
// void or deleted earlier boundary does not hold later ones back.
func testFinalizeOrder(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	for i := range 4 {
		ensure(t, s, draft("acme", fmt.Sprint("a-", i), "sub-a", i))
	}
	ensure(t, s, draft("acme", "b-0", "sub-b", 0)) // another subscription's draft holds nothing back
	k := t0.Add(time.Hour)
	_, err := s.FinalizeInvoice(ctx, "acme", "a-2", finalization(k, "1", nil))
	wantError(t, err, abacus.ECONFLICT, `invoice "a-0" (boundary 0) of subscription "sub-a" is still a draft: earlier boundaries are finalized first`)
	finalize(t, s, "acme", "a-0", k, "1")
	_, err = s.FinalizeInvoice(ctx, "acme", "a-2", finalization(k.Add(time.Hour), "1", nil))
	wantError(t, err, abacus.ECONFLICT, `invoice "a-1" (boundary 1) of subscription "sub-a" is still a draft: earlier boundaries are finalized first`)
	must(t, s.DeleteDraft(ctx, "acme", "a-1")) // nothing to bill at boundary 1
	a2 := finalize(t, s, "acme", "a-2", k.Add(time.Hour), "1")
	if a2.Number != "INV-000002" {
		t.Fatalf("a-2 number = %s", a2.Number)
	}
	_, err = s.VoidInvoice(ctx, "acme", "a-2", "wrong plan", fixedNow(k.Add(2*time.Hour)))
	must(t, err)
	a3 := finalize(t, s, "acme", "a-3", k.Add(3*time.Hour), "1")
	if a3.Number != "INV-000003" {
		t.Fatalf("a-3 number = %s", a3.Number)
	}
}

// testFinalizeStale: content computed as of K is stale when an invoice of
// the subscription was finalized or voided at or after K.
func testFinalizeStale(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	for i := range 3 {
		ensure(t, s, draft("acme", fmt.Sprint("a-", i), "sub-a", i))
	}
	k0 := t0.Add(time.Hour)
	finalize(t, s, "acme", "a-0", k0, "1")
	_, err := s.FinalizeInvoice(ctx, "acme", "a-1", finalization(k0, "1", nil))
	wantError(t, err, abacus.ECONFLICT, `stale: recompute: invoice "a-0" of subscription "sub-a" was finalized at 2026-03-01T13:00:00Z, not before the content's knowledge instant 2026-03-01T13:00:00Z`)
	_, err = s.FinalizeInvoice(ctx, "acme", "a-1", finalization(k0.Add(-1), "1", nil))
	wantCode(t, err, abacus.ECONFLICT)
	if !strings.HasPrefix(abacus.ErrorMessage(err), "stale: recompute") {
		t.Fatalf("error = %v, want stale", err)
	}
	// Voided at V: content as of V or before is stale, after V it is not.
	v := k0.Add(time.Hour)
	_, err = s.VoidInvoice(ctx, "acme", "a-0", "wrong address", fixedNow(v))
	must(t, err)
	_, err = s.FinalizeInvoice(ctx, "acme", "a-1", finalization(v, "1", nil))
	wantError(t, err, abacus.ECONFLICT, `stale: recompute: invoice "a-0" of subscription "sub-a" was voided at 2026-03-01T14:00:00Z, not before the content's knowledge instant 2026-03-01T14:00:00Z`)
	a1 := finalize(t, s, "acme", "a-1", v.Add(1), "1")
	if a1.Number != "INV-000002" || !a1.FinalizedAt.Equal(v.Add(1)) {
		t.Fatalf("a-1 = %s at %s", a1.Number, a1.FinalizedAt)
	}
	// Staleness is per subscription.
	ensure(t, s, draft("acme", "b-0", "sub-b", 0))
	finalize(t, s, "acme", "b-0", k0, "1")
}

// testFinalizeFailureLeavesNoGap: a finalization that fails after taking
// its number (Render fails, or returns no JSON) gives the number back.
func testFinalizeFailureLeavesNoGap(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	d := ensure(t, s, draft("acme", "inv-1", "sub-1", 0))
	boom := errors.New("template missing")
	var sawNumber string
	_, err := s.FinalizeInvoice(ctx, "acme", "inv-1", abacus.Finalization{KnownAt: t0, Total: "1", Render: func(inv *abacus.Invoice) (json.RawMessage, error) {
		sawNumber = inv.Number
		return nil, boom
	}})
	if !errors.Is(err, boom) || sawNumber != "INV-000001" {
		t.Fatalf("render failure: err = %v, number = %q", err, sawNumber)
	}
	_, err = s.FinalizeInvoice(ctx, "acme", "inv-1", abacus.Finalization{KnownAt: t0, Total: "1", Render: func(inv *abacus.Invoice) (json.RawMessage, error) {
		return json.RawMessage(`{"unterminated":`), nil
	}})
	if err == nil || abacus.ErrorCode(err) != abacus.EINTERNAL {
		t.Fatalf("invalid document: err = %v", err)
	}
	got, err := s.FindInvoice(ctx, "acme", "inv-1")
	must(t, err)
	same(t, "after failed finalizations", got, d)
	if inv := finalize(t, s, "acme", "inv-1", t0, "1"); inv.Number != "INV-000001" || inv.Sequence != 1 {
		t.Fatalf("number after failures = %s (%d)", inv.Number, inv.Sequence)
	}
}

// testNumberSeries: each tenant and each test clock has its own series.
func testNumberSeries(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	for _, c := range []*abacus.TestClock{{TenantID: "acme", ID: "clk-1"}, {TenantID: "acme", ID: "clk-2"}, {TenantID: "other", ID: "clk-1"}} {
		c.Now, c.CreatedAt = t0, t0
		must(t, s.CreateTestClock(ctx, c))
	}
	var got []string
	for i, c := range []struct{ tenant, clock string }{
		{"acme", ""}, {"acme", "clk-1"}, {"acme", ""}, {"other", ""}, {"acme", "clk-2"},
		{"acme", "clk-1"}, {"other", "clk-1"}, {"acme", ""}, {"other", ""},
	} {
		d := draft(c.tenant, fmt.Sprint("inv-", i), fmt.Sprint("sub-", i), 0)
		d.TestClockID = c.clock
		ensure(t, s, d)
		inv := finalize(t, s, c.tenant, d.ID, t0, "1")
		if inv.Series != c.clock || inv.Number != abacus.InvoiceNumber(c.clock, inv.Sequence) {
			t.Fatalf("%s: series %q, number %s, sequence %d", d.ID, inv.Series, inv.Number, inv.Sequence)
		}
		got = append(got, c.tenant+":"+inv.Number)
	}
	want := "acme:INV-000001 acme:TEST-clk-1-000001 acme:INV-000002 other:INV-000001 acme:TEST-clk-2-000001 " +
		"acme:TEST-clk-1-000002 other:TEST-clk-1-000001 acme:INV-000003 other:INV-000002"
	if strings.Join(got, " ") != want {
		t.Fatalf("numbers:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func testVoidInvoice(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	ensure(t, s, draft("acme", "inv-1", "sub-1", 0))
	ensure(t, s, draft("acme", "inv-2", "sub-2", 0))
	fin := finalize(t, s, "acme", "inv-1", t0.Add(time.Hour), "10.00")
	at := t0.Add(2*time.Hour + 5)
	called := false
	now := func() time.Time { called = true; return at }

	for _, c := range []struct{ reason, want string }{
		{"", "reason: is required"},
		{" \n\t", "reason: is required"},
		{strings.Repeat("é", 1001), "reason: must be at most 1000 characters, got 1001"},
		{"a\x00b", "reason: must not contain NUL characters"},
	} {
		_, err := s.VoidInvoice(ctx, "acme", "inv-1", c.reason, now)
		wantError(t, err, abacus.EINVALID, c.want)
	}
	if called {
		t.Fatal("VoidInvoice stamped an invalid void")
	}
	_, err := s.VoidInvoice(ctx, "acme", "nope", "x", now)
	wantError(t, err, abacus.ENOTFOUND, `invoice "nope" not found`)
	_, err = s.VoidInvoice(ctx, "acme", "inv-2", "x", now)
	wantError(t, err, abacus.ECONFLICT, `invoice "inv-2" is draft, not finalized: only a finalized invoice can be voided`)

	reason := strings.Repeat("é", 1000)
	got, err := s.VoidInvoice(ctx, "acme", "inv-1", reason, now)
	must(t, err)
	want := *fin
	want.Status, want.VoidedAt, want.VoidReason = abacus.InvoiceVoid, ptr(at), reason
	same(t, "voided", got, &want)
	found, err := s.FindInvoice(ctx, "acme", "inv-1")
	must(t, err)
	same(t, "voided, read back", found, &want)
	_, err = s.VoidInvoice(ctx, "acme", "inv-1", "again", now)
	wantError(t, err, abacus.ECONFLICT, `invoice "inv-1" is already void`)
}

func testDeleteDraft(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	ensure(t, s, draft("acme", "inv-1", "sub-1", 0))
	ensure(t, s, draft("acme", "inv-2", "sub-2", 0))
	finalize(t, s, "acme", "inv-2", t0, "1")
	wantError(t, s.DeleteDraft(ctx, "other", "inv-1"), abacus.ENOTFOUND, `invoice "inv-1" not found`)
	must(t, s.DeleteDraft(ctx, "acme", "inv-1"))
	_, err := s.FindInvoice(ctx, "acme", "inv-1")
	wantCode(t, err, abacus.ENOTFOUND)
	wantError(t, s.DeleteDraft(ctx, "acme", "inv-1"), abacus.ENOTFOUND, `invoice "inv-1" not found`)
	wantError(t, s.DeleteDraft(ctx, "acme", "inv-2"), abacus.ECONFLICT, `invoice "inv-2" is finalized, not a draft: only a draft can be deleted`)
	_, err = s.VoidInvoice(ctx, "acme", "inv-2", "x", fixedNow(t0.Add(time.Hour)))
	must(t, err)
	wantError(t, s.DeleteDraft(ctx, "acme", "inv-2"), abacus.ECONFLICT, `invoice "inv-2" is void, not a draft: only a draft can be deleted`)
	// The boundary can be ensured again.
	ensure(t, s, draft("acme", "inv-1b", "sub-1", 0))
}

func creditNote(tenant, id, invoice string, amounts ...string) *abacus.CreditNote {
	n := &abacus.CreditNote{TenantID: tenant, ID: id, InvoiceID: invoice, Reason: "goodwill", CreatedAt: t0.Add(5 * time.Hour)}
	for i, a := range amounts {
		n.Lines = append(n.Lines, abacus.CreditNoteLine{Description: fmt.Sprint("line ", i+1), Amount: a})
	}
	return n
}

func testCreditNotes(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	ensure(t, s, draft("acme", "inv-1", "sub-1", 0))
	ensure(t, s, draft("acme", "inv-2", "sub-2", 0))
	jpy := draft("acme", "inv-jpy", "sub-3", 0)
	jpy.Currency = "JPY"
	ensure(t, s, jpy)
	ensure(t, s, draft("other", "inv-1", "sub-1", 0))
	ensure(t, s, draft("acme", "inv-draft", "sub-4", 0))
	finalize(t, s, "acme", "inv-1", t0, "100.00")
	finalize(t, s, "acme", "inv-2", t0, "5.00")
	finalize(t, s, "acme", "inv-jpy", t0, "1000")
	finalize(t, s, "other", "inv-1", t0, "100.00")

	// Amounts come back at the minor unit; the total is their sum.
	in := creditNote("acme", "cn-a", "inv-1", "12.5", "7.25", "0.250")
	in.Reason, in.Currency = "Refund <partial> & goodwill", "eur"
	n1, err := s.CreateCreditNote(ctx, in)
	must(t, err)
	want1 := &abacus.CreditNote{TenantID: "acme", ID: "cn-a", Number: "CN-000001", InvoiceID: "inv-1", Currency: "EUR", Reason: "Refund <partial> & goodwill",
		Lines: []abacus.CreditNoteLine{{Description: "line 1", Amount: "12.50"}, {Description: "line 2", Amount: "7.25"}, {Description: "line 3", Amount: "0.25"}}, Total: "20.00", CreatedAt: in.CreatedAt}
	same(t, "credit note", n1, want1)
	if in.Number != "" || in.Lines[0].Amount != "12.5" {
		t.Fatalf("CreateCreditNote changed its input: %+v", in)
	}
	n2, err := s.CreateCreditNote(ctx, creditNote("acme", "cn-b", "inv-2", "5"))
	must(t, err)
	n3, err := s.CreateCreditNote(ctx, creditNote("acme", "cn-c", "inv-jpy", "300", "200"))
	must(t, err)
	if n2.Number != "CN-000002" || n2.Total != "5.00" || n3.Number != "CN-000003" || n3.Total != "500" || n3.Currency != "JPY" {
		t.Fatalf("credit notes = %+v, %+v", n2, n3)
	}
	no, err := s.CreateCreditNote(ctx, creditNote("other", "cn-a", "inv-1", "1"))
	must(t, err)
	if no.Number != "CN-000001" {
		t.Fatalf("other tenant's first credit note = %s", no.Number)
	}

	// Over-credit: 80.00 remain on inv-1; inv-2 is fully credited.
	_, err = s.CreateCreditNote(ctx, creditNote("acme", "cn-d", "inv-1", "80.01"))
	wantError(t, err, abacus.ECONFLICT, `credit notes would exceed the total 100.00 EUR of invoice "inv-1": 80.00 EUR remaining creditable, this note is 80.01`)
	_, err = s.CreateCreditNote(ctx, creditNote("acme", "cn-d", "inv-2", "0.01"))
	wantError(t, err, abacus.ECONFLICT, `credit notes would exceed the total 5.00 EUR of invoice "inv-2": 0.00 EUR remaining creditable, this note is 0.01`)
	// A taken id: refused, and its number is not lost.
	_, err = s.CreateCreditNote(ctx, creditNote("acme", "cn-a", "inv-1", "1"))
	wantError(t, err, abacus.ECONFLICT, `credit note "cn-a" already exists`)
	n4, err := s.CreateCreditNote(ctx, creditNote("acme", "cn-d", "inv-1", "80.00")) // exactly what remains
	must(t, err)
	if n4.Number != "CN-000004" {
		t.Fatalf("number after refusals = %s", n4.Number)
	}

	// Only finalized invoices.
	_, err = s.CreateCreditNote(ctx, creditNote("acme", "cn-e", "inv-draft", "1"))
	wantError(t, err, abacus.ECONFLICT, `invoice "inv-draft" is draft, not finalized: credit notes apply to finalized invoices only`)
	_, err = s.VoidInvoice(ctx, "acme", "inv-jpy", "reissued", fixedNow(t0.Add(time.Hour)))
	must(t, err)
	_, err = s.CreateCreditNote(ctx, creditNote("acme", "cn-e", "inv-jpy", "1"))
	wantError(t, err, abacus.ECONFLICT, `invoice "inv-jpy" is void, not finalized: credit notes apply to finalized invoices only`)
	_, err = s.CreateCreditNote(ctx, creditNote("acme", "cn-e", "nope", "1"))
	wantError(t, err, abacus.ENOTFOUND, `invoice "nope" not found`)

	all, err := s.ListCreditNotes(ctx, "acme", "")
	must(t, err)
	same(t, "acme's credit notes", all, []*abacus.CreditNote{n1, n2, n3, n4})
	of1, err := s.ListCreditNotes(ctx, "acme", "inv-1")
	must(t, err)
	same(t, "credit notes of inv-1", of1, []*abacus.CreditNote{n1, n4})
	theirs, err := s.ListCreditNotes(ctx, "other", "")
	must(t, err)
	same(t, "other's credit notes", theirs, []*abacus.CreditNote{no})
	none, err := s.ListCreditNotes(ctx, "acme", "inv-draft")
	empty(t, "credit notes of a draft", none, err)
}

func testCreditNotesInvalid(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	ensure(t, s, draft("acme", "inv-1", "sub-1", 0))
	jpy := draft("acme", "inv-jpy", "sub-2", 0)
	jpy.Currency = "JPY"
	ensure(t, s, jpy)
	finalize(t, s, "acme", "inv-1", t0, "100.00")
	finalize(t, s, "acme", "inv-jpy", t0, "1000")
	for _, c := range []struct {
		name string
		n    *abacus.CreditNote
		want string
	}{
		{"no lines", &abacus.CreditNote{TenantID: "acme", ID: "cn", InvoiceID: "inv-1", Reason: "x"}, "lines: at least one line is required"},
		{"no ids", &abacus.CreditNote{TenantID: "acme", Lines: []abacus.CreditNoteLine{{Amount: "1"}}}, "id: is required; invoice: is required; reason: is required"},
		{"amounts", creditNote("acme", "cn", "inv-1", "0", "-1", "abc", "NaN", "1e40"),
			`lines[0].amount: must be positive, got 0; lines[1].amount: must be positive, got -1; lines[2].amount: "abc" is not a decimal number; ` +
				`lines[3].amount: "NaN" is not a finite number; lines[4].amount: "1e40" is too large (at most 30 integer digits)`},
		{"minor unit", creditNote("acme", "cn", "inv-1", "1.001", "1.010"), "lines[0].amount: 1.001 has more fractional digits than EUR's minor unit (2)"},
		{"minor unit named", func() *abacus.CreditNote {
			n := creditNote("acme", "cn", "inv-1", "1.001")
			n.Currency, n.Reason = "EUR", ""
			return n
		}(), "reason: is required; lines[0].amount: 1.001 has more fractional digits than EUR's minor unit (2)"},
		{"yen", creditNote("acme", "cn", "inv-jpy", "1.5"), "lines[0].amount: 1.5 has more fractional digits than JPY's minor unit (0)"},
		{"currency", func() *abacus.CreditNote {
			n := creditNote("acme", "cn", "inv-1", "1")
			n.Currency = "usd"
			return n
		}(), "currency: the invoice is in EUR, not USD"},
		{"description", func() *abacus.CreditNote {
			n := creditNote("acme", "cn", "inv-1", "1")
			n.Lines[0].Description = strings.Repeat("d", 1001)
			return n
		}(), "lines[0].description: must be at most 1000 characters, got 1001"},
	} {
		_, err := s.CreateCreditNote(ctx, c.n)
		if abacus.ErrorCode(err) != abacus.EINVALID || abacus.ErrorMessage(err) != c.want {
			t.Errorf("%s: error = %v\nwant invalid: %s", c.name, err, c.want)
		}
	}
	none, err := s.ListCreditNotes(ctx, "acme", "")
	empty(t, "credit notes after invalid ones", none, err)
	n, err := s.CreateCreditNote(ctx, creditNote("acme", "cn", "inv-1", "1.010"))
	must(t, err)
	if n.Number != "CN-000001" || n.Total != "1.01" {
		t.Fatalf("first valid credit note = %+v", n)
	}
}
