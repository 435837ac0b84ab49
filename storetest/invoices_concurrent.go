package storetest

// Invoice storage under attack: raw SQL behind the store's back, and
// concurrent writers in two stores on one database (two processes).

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
)

// testImmutableByDatabase: the database itself refuses to change an issued
// invoice or credit note, or to bend a number series, whatever SQL is sent.
func testImmutableByDatabase(t *testing.T, s abacus.Store, exec func(context.Context, abacus.Store, string) error) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	ensure(t, s, draft("acme", "inv-1", "sub-1", 0))
	ensure(t, s, draft("acme", "inv-2", "sub-2", 0))
	ensure(t, s, draft("acme", "inv-3", "sub-3", 0))
	finalize(t, s, "acme", "inv-1", t0, "100.00")
	finalize(t, s, "acme", "inv-3", t0, "3.00")
	_, err := s.VoidInvoice(ctx, "acme", "inv-3", "duplicate", fixedNow(t0.Add(time.Hour)))
	must(t, err)
	_, err = s.CreateCreditNote(ctx, creditNote("acme", "cn-1", "inv-1", "10"))
	must(t, err)
	before := func() (invs []*abacus.Invoice, notes []*abacus.CreditNote) {
		for _, id := range []string{"inv-1", "inv-3"} {
			inv, err := s.FindInvoice(ctx, "acme", id)
			must(t, err)
			invs = append(invs, inv)
		}
		notes, err := s.ListCreditNotes(ctx, "acme", "")
		must(t, err)
		return invs, notes
	}
	invs, notes := before()

	const inv1, inv2, inv3 = `tenant_id = 'acme' AND id = 'inv-1'`, `tenant_id = 'acme' AND id = 'inv-2'`, `tenant_id = 'acme' AND id = 'inv-3'`
	for _, c := range []struct{ sql, want string }{
		{`UPDATE invoices SET document = '{"total":"0.00"}' WHERE ` + inv1, "invoice is immutable"},
		{`UPDATE invoices SET total = '0.00' WHERE ` + inv1, "invoice is immutable"},
		{`UPDATE invoices SET body = body WHERE ` + inv1 + ` AND 1 = 0`, ""}, // touches no row: nothing to refuse
		{`UPDATE invoices SET status = 'draft', sequence = NULL, number = NULL, finalized_at = NULL, total = NULL, document = NULL WHERE ` + inv1, "invoice is immutable"},
		{`UPDATE invoices SET status = 'void', voided_at = 1, void_reason = 'x', total = '0.00' WHERE ` + inv1, "invoice is immutable"},
		{`UPDATE invoices SET void_reason = 'other reason' WHERE ` + inv3, "invoice is immutable"},
		{`UPDATE invoices SET status = 'finalized', voided_at = NULL, void_reason = '' WHERE ` + inv3, "invoice is immutable"},
		{`DELETE FROM invoices WHERE ` + inv1, "invoice is immutable"},
		{`DELETE FROM invoices WHERE ` + inv3, "invoice is immutable"},
		{`UPDATE credit_notes SET total = '0.01' WHERE tenant_id = 'acme'`, "credit note is immutable"},
		{`DELETE FROM credit_notes WHERE tenant_id = 'acme'`, "credit note is immutable"},
		{`UPDATE invoice_counters SET last = last + 2 WHERE tenant_id = 'acme'`, "number series"},
		{`UPDATE invoice_counters SET last = last - 1 WHERE tenant_id = 'acme'`, "number series"},
		{`UPDATE invoice_counters SET series = 'x', last = last + 1 WHERE tenant_id = 'acme'`, "number series"},
		{`DELETE FROM invoice_counters WHERE tenant_id = 'acme'`, "number series"},
		{`UPDATE credit_note_counters SET last = 7 WHERE tenant_id = 'acme'`, "number series"},
		{`DELETE FROM credit_note_counters WHERE tenant_id = 'acme'`, "number series"},
		{`INSERT INTO invoice_counters(tenant_id, series, last) VALUES ('acme', 'fresh', 5)`, "number series start at one"},
		{`INSERT INTO credit_note_counters(tenant_id, last) VALUES ('other', 2)`, "number series start at one"},
	} {
		err := exec(ctx, s, c.sql)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.sql, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error = %v, want one saying %q", c.sql, err, c.want)
		}
	}
	gotInvs, gotNotes := before()
	same(t, "invoices after refused SQL", gotInvs, invs)
	same(t, "credit notes after refused SQL", gotNotes, notes)

	// What stays allowed: drafts change and go, and a finalized invoice
	// becomes void by changing status, voided_at and void_reason only.
	for _, q := range []string{
		`UPDATE invoices SET due_at = due_at + 1 WHERE ` + inv2,
		`DELETE FROM invoices WHERE ` + inv2,
		`UPDATE invoices SET status = 'void', voided_at = 1, void_reason = 'by hand' WHERE ` + inv1,
	} {
		if err := exec(ctx, s, q); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
	got, err := s.FindInvoice(ctx, "acme", "inv-1")
	must(t, err)
	want := *invs[0]
	want.Status, want.VoidedAt, want.VoidReason = abacus.InvoiceVoid, ptr(time.Unix(0, 1).UTC()), "by hand"
	same(t, "voided by hand", got, &want)
	// The series went on untouched.
	ensure(t, s, draft("acme", "inv-4", "sub-4", 0))
	if inv := finalize(t, s, "acme", "inv-4", t0, "1"); inv.Number != "INV-000003" {
		t.Fatalf("number after refused counter changes = %s", inv.Number)
	}
	n, err := s.CreateCreditNote(ctx, creditNote("acme", "cn-2", "inv-4", "1"))
	must(t, err)
	if n.Number != "CN-000002" {
		t.Fatalf("credit note number after refused counter changes = %s", n.Number)
	}
}

// workers runs fn(worker, store) on 8 goroutines, half of them on each of
// two stores.
func workers(a, b abacus.Store, fn func(w int, s abacus.Store)) {
	var wg sync.WaitGroup
	for w := range 8 {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() { fn(w, s) })
	}
	wg.Wait()
}

// testConcurrentFinalize: finalizations racing in two stores (every
// invoice tried twice at once, renders failing now and then, later
// boundaries tried before earlier ones) finalize each invoice once and
// number every series 1..n with no gap and no duplicate.
func testConcurrentFinalize(t *testing.T, openPair func(t *testing.T) (abacus.Store, abacus.Store)) {
	a, b := openPair(t)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	seedTenant(t, a, "acme")
	must(t, a.CreateTestClock(ctx, &abacus.TestClock{TenantID: "acme", ID: "clk", Now: t0, CreatedAt: t0}))
	// 20 tenant subscriptions and 6 test-clock ones, two boundaries each.
	var all []string
	series := map[string]string{}
	for i := range 26 {
		for boundary := range 2 {
			d := draft("acme", fmt.Sprintf("inv-%02d-%d", i, boundary), fmt.Sprint("sub-", i), boundary)
			if i >= 20 {
				d.TestClockID = "clk"
			}
			ensure(t, a, d)
			all = append(all, d.ID)
			series[d.ID] = d.TestClockID
		}
	}

	var mu sync.Mutex
	wins := map[string]int{}     // successful finalizations per invoice
	attempts := map[string]int{} // renders per invoice
	pending := slices.Clone(all)
	rng := rand.New(rand.NewPCG(7, 7))
	for round := 0; len(pending) > 0; round++ {
		if round == 10 {
			t.Fatalf("invoices still drafts after %d rounds: %v", round, pending)
		}
		jobs := append(slices.Clone(pending), pending...) // each twice: racing on one invoice
		rng.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
		queue := make(chan string, len(jobs))
		for _, id := range jobs {
			queue <- id
		}
		close(queue)
		workers(a, b, func(w int, s abacus.Store) {
			for id := range queue {
				boundary := int(id[len(id)-1] - '0')
				f := finalization(t0.Add(time.Duration(boundary+1)*time.Hour), "1.00", nil)
				render := f.Render
				f.Render = func(inv *abacus.Invoice) (json.RawMessage, error) {
					mu.Lock()
					attempts[id]++
					fail := attempts[id] == 1 && strings.HasSuffix(id, "3-0") // some first renders fail
					mu.Unlock()
					if fail {
						return nil, fmt.Errorf("render %s failed", id)
					}
					return render(inv)
				}
				inv, err := s.FinalizeInvoice(ctx, "acme", id, f)
				switch {
				case err == nil:
					if inv.Number != abacus.InvoiceNumber(series[id], inv.Sequence) {
						t.Errorf("%s: number %s, sequence %d", id, inv.Number, inv.Sequence)
					}
					mu.Lock()
					wins[id]++
					mu.Unlock()
				case abacus.ErrorMessage(err) == fmt.Sprintf("invoice %q is finalized, not a draft", id),
					strings.HasSuffix(abacus.ErrorMessage(err), "is still a draft: earlier boundaries are finalized first"),
					strings.Contains(err.Error(), "render "+id+" failed"):
					// lost the race, came too early, or failed: a later round retries
				default:
					t.Errorf("finalize %s: %v", id, err)
				}
			}
		})
		pending = pending[:0]
		for _, id := range all {
			if wins[id] == 0 {
				pending = append(pending, id)
			}
		}
	}

	for id, n := range wins {
		if n != 1 {
			t.Errorf("%s finalized %d times", id, n)
		}
	}
	invs, err := b.ListInvoices(ctx, abacus.InvoiceFilter{TenantID: "acme"})
	must(t, err)
	seqs := map[string][]int64{}
	for _, inv := range invs {
		if inv.Status != abacus.InvoiceFinalized {
			t.Fatalf("%s is %s", inv.ID, inv.Status)
		}
		seqs[inv.Series] = append(seqs[inv.Series], inv.Sequence)
		full, err := a.FindInvoice(ctx, "acme", inv.ID)
		must(t, err)
		if string(full.Document) != string(document(full)) {
			t.Fatalf("%s: document rendered with other fields than stored", inv.ID)
		}
	}
	for s, want := range map[string]int{"": 40, "clk": 12} {
		got := seqs[s]
		slices.Sort(got)
		for i, seq := range got {
			if seq != int64(i+1) {
				t.Fatalf("series %q: sequences %v, want 1..%d", s, got, want)
			}
		}
		if len(got) != want {
			t.Fatalf("series %q: %d numbers, want %d", s, len(got), want)
		}
	}
}

// testConcurrentEnsure: EnsureInvoice of one boundary from 8 goroutines in
// two stores, each with its own invoice id, stores one invoice that all of
// them get back.
func testConcurrentEnsure(t *testing.T, openPair func(t *testing.T) (abacus.Store, abacus.Store)) {
	a, b := openPair(t)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	seedTenant(t, a, "acme")
	const boundaries = 20
	var got [8][boundaries]*abacus.Invoice
	workers(a, b, func(w int, s abacus.Store) {
		for i := range boundaries {
			inv, err := s.EnsureInvoice(ctx, draft("acme", fmt.Sprintf("inv-%d-w%d", i, w), "sub-1", i))
			if err != nil {
				t.Errorf("worker %d, boundary %d: %v", w, i, err)
				return
			}
			got[w][i] = inv
		}
	})
	if t.Failed() {
		return
	}
	invs, err := a.ListInvoices(ctx, abacus.InvoiceFilter{TenantID: "acme"})
	must(t, err)
	if len(invs) != boundaries {
		t.Fatalf("%d invoices for %d boundaries: %s", len(invs), boundaries, ids(invs))
	}
	for i := range boundaries {
		for w := range got {
			same(t, fmt.Sprintf("boundary %d as worker %d got it", i, w), got[w][i], got[0][i])
		}
		if got[0][i].Boundary != i {
			t.Fatalf("boundary %d: got %+v", i, got[0][i])
		}
	}
}

// testConcurrentCreditNotes: 8 credit notes of 30.00 racing on each of two
// invoices of 100.00, in two stores: 3 pass on each, the others are told
// 10.00 remain, and the 6 that pass are numbered 1..6.
func testConcurrentCreditNotes(t *testing.T, openPair func(t *testing.T) (abacus.Store, abacus.Store)) {
	a, b := openPair(t)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	seedTenant(t, a, "acme")
	for _, id := range []string{"inv-1", "inv-2"} {
		ensure(t, a, draft("acme", id, "sub-"+id, 0))
		finalize(t, a, "acme", id, t0, "100.00")
	}
	var mu sync.Mutex
	passed := map[string][]string{}
	var numbers []string
	var wg sync.WaitGroup
	for _, invoice := range []string{"inv-1", "inv-2"} {
		wg.Go(func() {
			workers(a, b, func(w int, s abacus.Store) {
				n, err := s.CreateCreditNote(ctx, creditNote("acme", fmt.Sprintf("cn-%s-%d", invoice, w), invoice, "30"))
				switch {
				case err == nil:
					mu.Lock()
					passed[invoice] = append(passed[invoice], n.ID)
					numbers = append(numbers, n.Number)
					mu.Unlock()
				case abacus.ErrorMessage(err) != fmt.Sprintf(`credit notes would exceed the total 100.00 EUR of invoice %q: 10.00 EUR remaining creditable, this note is 30.00`, invoice):
					t.Errorf("%s by worker %d: %v", invoice, w, err)
				}
			})
		})
	}
	wg.Wait()
	for _, invoice := range []string{"inv-1", "inv-2"} {
		if len(passed[invoice]) != 3 {
			t.Errorf("%s: %d credit notes passed, want 3: %v", invoice, len(passed[invoice]), passed[invoice])
		}
		notes, err := b.ListCreditNotes(ctx, "acme", invoice)
		must(t, err)
		if len(notes) != 3 {
			t.Errorf("%s: %d credit notes stored, want 3", invoice, len(notes))
		}
	}
	slices.Sort(numbers)
	if want := "CN-000001 CN-000002 CN-000003 CN-000004 CN-000005 CN-000006"; strings.Join(numbers, " ") != want {
		t.Fatalf("numbers = %v, want %s", numbers, want)
	}
}
