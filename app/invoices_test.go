package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/app"
	"github.com/abacus-billing/abacus/invoice"
	"github.com/abacus-billing/abacus/postgres"
	"github.com/cockroachdb/apd/v3"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden invoices in testdata/invoices")

// invEnv is one server with a hand-moved clock, for invoice scenarios.
type invEnv struct {
	t     *testing.T
	a     *app.App
	clock *subTestClock
	store string
	// simulated: the customers live on a test clock; usage does not move
	// the real clock.
	simulated bool
}

func newInvEnv(t *testing.T, store string, t0 string) *invEnv {
	t.Helper()
	clock := newSubTestClock(subTime(t0))
	e := &invEnv{t: t, a: startSubs(t, store, clock, 0), clock: clock, store: store}
	// Scenarios send a whole period's usage at once, after the fact.
	e.must(200, "PATCH", "/v1/tenant", `{"backdate_window":"9000h"}`, nil)
	return e
}

func (e *invEnv) must(want int, method, path string, body, out any) string {
	e.t.Helper()
	return subMust(e.t, e.a, want, method, path, body, out)
}

// at moves the clock.
func (e *invEnv) at(t string) { e.clock.Set(subTime(t)) }

// usage sends events of type "api" with property n, and waits until they
// are aggregated. Each is "id time n".
func (e *invEnv) usage(customer string, events ...string) {
	e.t.Helper()
	var b strings.Builder
	for _, ev := range events {
		f := strings.Fields(ev)
		// The clock must be past the event (events are not from the future).
		if t := subTime(f[1]).Add(time.Minute); !e.simulated && e.clock.Now().Before(t) {
			e.clock.Set(t)
		}
		fmt.Fprintf(&b, `{"id":%q,"type":"api","customer":%q,"time":%q,"properties":{"n":%s}}`+"\n", f[0], customer, f[1], f[2])
	}
	st, resp := request(e.t, e.a, adminKey, "POST", "/v1/events", "application/x-ndjson", b.String())
	if st != 202 || strings.Contains(resp, `"rejected":[{`) {
		e.t.Fatalf("ingest: %d %s", st, resp)
	}
	catchUp(e.t, e.a)
}

// sync runs the scheduler for every subscription at the current clock.
func (e *invEnv) sync() []*abacus.Invoice {
	e.t.Helper()
	invs, err := e.a.Invoices.SyncTenant(context.Background(), abacus.DefaultTenantID)
	if err != nil {
		e.t.Fatalf("scheduler: %v", err)
	}
	return invs
}

// finalized returns the finalized documents of a subscription by boundary.
func (e *invEnv) finalized(sub string) []json.RawMessage {
	e.t.Helper()
	invs, err := e.a.Store.SubscriptionInvoices(context.Background(), abacus.DefaultTenantID, sub)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []json.RawMessage
	for _, inv := range invs {
		if inv.Status != abacus.InvoiceDraft {
			out = append(out, inv.Document)
		}
	}
	return out
}

func (e *invEnv) doc(raw json.RawMessage) invoice.Document {
	e.t.Helper()
	var d invoice.Document
	if err := json.Unmarshal(raw, &d); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// totals returns "issue_at total" per document.
func (e *invEnv) totals(docs []json.RawMessage) []string {
	var out []string
	for _, raw := range docs {
		d := e.doc(raw)
		out = append(out, d.IssueAt.Format("2006-01-02T15:04Z07:00")+" "+d.Total)
	}
	return out
}

// golden compares documents with testdata/invoices/<name>.json (rewritten
// with -update). Documents are compared as indented JSON.
func golden(t *testing.T, name string, docs []json.RawMessage) {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i, d := range docs {
		var ind bytes.Buffer
		if err := json.Indent(&ind, d, "  ", "  "); err != nil {
			t.Fatal(err)
		}
		buf.WriteString("  ")
		buf.Write(ind.Bytes())
		if i < len(docs)-1 {
			buf.WriteString(",")
		}
		buf.WriteString("\n")
	}
	buf.WriteString("]\n")
	path := filepath.Join("testdata", "invoices", name+".json")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./app -run Invoice -update to create it)", err)
	}
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, buf.String(), want)
	}
}

func sameStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

const (
	meterAPI      = `{"key":"api_calls","event_type":"api","aggregation":"sum","value":"$.n"}`
	planGraduated = `{"key":"std","name":"Standard","currency":"USD","interval":"month","charges":[
		{"key":"base","name":"Platform fee","type":"recurring","amount":"20.00"},
		{"key":"calls","name":"API calls","type":"usage","meter":"api_calls","price":{"version":1,"currency":"USD","model":"graduated",
		 "tiers":[{"up_to":"1000","unit_price":"0"},{"up_to":"10000","unit_price":"0.002"},{"unit_price":"0.001"}]}}]}`
	planBasic = `{"key":"basic","name":"Basic","currency":"USD","interval":"month","charges":[{"key":"base","type":"recurring","amount":"10.00"}]}`
	planPro30 = `{"key":"pro","name":"Pro","currency":"USD","interval":"month","charges":[{"key":"base","type":"recurring","amount":"30.00"}]}`
)

// TestInvoiceGolden: the golden invoices of docs/invoicing.md, on both
// stores, compared byte for byte with testdata/invoices.
func TestInvoiceGolden(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			t.Run("graduated_usage_and_flat_fee", func(t *testing.T) { testGoldenGraduated(t, store) })
			t.Run("upgrade_with_prorations", func(t *testing.T) { testGoldenUpgrade(t, store) })
			t.Run("cancel_at_period_end", func(t *testing.T) { testGoldenCancel(t, store) })
			t.Run("minimum_commitment", func(t *testing.T) { testGoldenCommitment(t, store) })
			t.Run("discounts", func(t *testing.T) { testGoldenDiscount(t, store) })
			t.Run("berlin_dst", func(t *testing.T) { testGoldenBerlin(t, store) })
			t.Run("month_end_anchors", func(t *testing.T) { testGoldenAnchors(t, store) })
		})
	}
}

func testGoldenGraduated(t *testing.T, store string) {
	e := newInvEnv(t, store, "2026-03-01T00:00:00Z")
	e.must(201, "POST", "/v1/meters", meterAPI, nil)
	e.must(201, "POST", "/v1/customers", `{"id":"acme","name":"Acme Inc."}`, nil)
	e.must(201, "POST", "/v1/plans", planGraduated, nil)
	e.must(201, "POST", "/v1/subscriptions", `{"id":"sub-grad","customer":"acme","plan":"std","billing_anchor":"calendar"}`, nil)
	e.at("2026-03-31T12:00:00Z")
	e.usage("acme", "u1 2026-03-02T10:00:00Z 4000", "u2 2026-03-15T10:00:00Z 8000", "u3 2026-03-31T23:59:00Z 500",
		"u4 2026-04-01T00:00:00Z 7") // April's
	e.at("2026-04-01T03:00:00Z")
	e.sync()
	// March: 1000 free, 9000 × 0.002 = 18.00, 2500 × 0.001 = 2.50.
	sameStrings(t, "totals", e.totals(e.finalized("sub-grad")), []string{"2026-03-01T00:00Z 20.00", "2026-04-01T00:00Z 40.50"})
	golden(t, "graduated_usage_and_flat_fee", e.finalized("sub-grad"))
}

func testGoldenUpgrade(t *testing.T, store string) {
	e := newInvEnv(t, store, "2026-01-01T00:00:00Z")
	e.must(201, "POST", "/v1/customers", `{"id":"acme"}`, nil)
	e.must(201, "POST", "/v1/plans", planBasic, nil)
	e.must(201, "POST", "/v1/plans", planPro30, nil)
	e.must(201, "POST", "/v1/subscriptions", `{"id":"sub-up","customer":"acme","plan":"basic","billing_anchor":"calendar"}`, nil)
	e.at("2026-01-01T03:00:00Z")
	e.sync()
	e.at("2026-01-16T00:00:00Z")
	e.must(200, "POST", "/v1/subscriptions/sub-up/change", `{"plan":"pro"}`, nil)
	e.at("2026-02-01T03:00:00Z")
	e.sync()
	// Basic billed 10.00 in advance; now 15/31 of it (4.84): −5.16. Pro
	// 16/31 of 30.00 = 15.48, and February in advance 30.00.
	sameStrings(t, "totals", e.totals(e.finalized("sub-up")), []string{"2026-01-01T00:00Z 10.00", "2026-02-01T00:00Z 40.32"})
	golden(t, "upgrade_with_prorations", e.finalized("sub-up"))
}

func testGoldenCancel(t *testing.T, store string) {
	e := newInvEnv(t, store, "2026-01-01T00:00:00Z")
	e.must(201, "POST", "/v1/meters", meterAPI, nil)
	e.must(201, "POST", "/v1/customers", `{"id":"acme"}`, nil)
	e.must(201, "POST", "/v1/plans", planGraduated, nil)
	e.must(201, "POST", "/v1/subscriptions", `{"id":"sub-c","customer":"acme","plan":"std","billing_anchor":"calendar"}`, nil)
	e.at("2026-01-20T00:00:00Z")
	e.must(200, "POST", "/v1/subscriptions/sub-c/cancel", `{"timing":"period_end"}`, nil)
	e.usage("acme", "c1 2026-01-10T00:00:00Z 3000")
	e.at("2026-03-05T00:00:00Z")
	e.sync()
	// Jan in advance 20.00; at Feb 1: 2000 × 0.002 = 4.00 and no February.
	sameStrings(t, "totals", e.totals(e.finalized("sub-c")), []string{"2026-01-01T00:00Z 20.00", "2026-02-01T00:00Z 4.00"})
	if t.Failed() {
		for _, d := range e.finalized("sub-c") {
			t.Logf("%s", d)
		}
	}
	golden(t, "cancel_at_period_end", e.finalized("sub-c"))
}

func testGoldenCommitment(t *testing.T, store string) {
	e := newInvEnv(t, store, "2026-05-01T00:00:00Z")
	e.must(201, "POST", "/v1/meters", meterAPI, nil)
	e.must(201, "POST", "/v1/customers", `{"id":"acme"}`, nil)
	e.must(201, "POST", "/v1/plans", `{"key":"committed","currency":"USD","interval":"month","minimum_commitment":"100.00","charges":[
		{"key":"base","type":"recurring","amount":"20.00"},
		{"key":"calls","type":"usage","meter":"api_calls","price":{"version":1,"currency":"USD","model":"per_unit","unit_price":"0.01"}}]}`, nil)
	e.must(201, "POST", "/v1/subscriptions", `{"id":"sub-m","customer":"acme","plan":"committed","billing_anchor":"calendar"}`, nil)
	e.usage("acme", "m1 2026-05-03T00:00:00Z 500")
	e.at("2026-06-01T03:00:00Z")
	e.sync()
	// May: 20.00 + 5.00 = 25.00 < 100.00: true-up 75.00, so 5.00 + 75.00 and June 20.00 in advance.
	sameStrings(t, "totals", e.totals(e.finalized("sub-m")), []string{"2026-05-01T00:00Z 20.00", "2026-06-01T00:00Z 100.00"})
	golden(t, "minimum_commitment", e.finalized("sub-m"))
}

func testGoldenDiscount(t *testing.T, store string) {
	e := newInvEnv(t, store, "2026-01-01T00:00:00Z")
	e.must(201, "POST", "/v1/meters", meterAPI, nil)
	e.must(201, "POST", "/v1/customers", `{"id":"acme"}`, nil)
	e.must(201, "POST", "/v1/plans", planGraduated, nil)
	e.must(201, "POST", "/v1/subscriptions", `{"id":"sub-d","customer":"acme","plan":"std","billing_anchor":"calendar"}`, nil)
	e.must(200, "POST", "/v1/subscriptions/sub-d/discounts", `{"discount":{"key":"launch","description":"Launch offer","percent":"25","items":["base"]}}`, nil)
	e.must(200, "POST", "/v1/subscriptions/sub-d/discounts", `{"discount":{"key":"loyalty","amount":"5.00"}}`, nil)
	e.usage("acme", "d1 2026-01-05T00:00:00Z 6000")
	e.at("2026-02-01T03:00:00Z")
	e.sync()
	// Jan: 20.00 − 25 % = 15.00 in advance. Feb 1: usage 5000 × 0.002 =
	// 10.00, loyalty −5.00 for January; February 15.00 in advance.
	sameStrings(t, "totals", e.totals(e.finalized("sub-d")), []string{"2026-01-01T00:00Z 15.00", "2026-02-01T00:00Z 20.00"})
	golden(t, "discounts", e.finalized("sub-d"))
}

func testGoldenBerlin(t *testing.T, store string) {
	e := newInvEnv(t, store, "2026-02-28T23:00:00Z") // Mar 1 00:00 in Berlin
	e.must(201, "POST", "/v1/meters", meterAPI, nil)
	e.must(201, "POST", "/v1/customers", `{"id":"berlin","name":"Berlin GmbH","time_zone":"Europe/Berlin"}`, nil)
	e.must(201, "POST", "/v1/plans", planGraduated, nil)
	e.must(201, "POST", "/v1/plans", `{"key":"pro","currency":"USD","interval":"month","charges":[{"key":"base","type":"recurring","amount":"31.00"},
		{"key":"calls","type":"usage","meter":"api_calls","price":{"version":1,"currency":"USD","model":"per_unit","unit_price":"0.001"}}]}`, nil)
	e.must(201, "POST", "/v1/subscriptions", `{"id":"sub-b","customer":"berlin","plan":"std","billing_anchor":"calendar"}`, nil)
	e.at("2026-03-01T02:00:00Z") // 03:00 in Berlin: March's advance invoice
	e.sync()
	// Clocks go forward on Mar 29 02:00; the upgrade is on Mar 29 12:00
	// local: 3 of 31 days of March on pro.
	e.at("2026-03-29T10:00:00Z")
	e.must(200, "POST", "/v1/subscriptions/sub-b/change", `{"plan":"pro"}`, nil)
	// 23:30 on Mar 31 in Berlin is March (pro: 2000 × 0.001); 00:30 on
	// Apr 1 is April; Mar 10 is std (1000 free, 500 × 0.002).
	e.usage("berlin", "b0 2026-03-10T12:00:00Z 1500", "b1 2026-03-31T21:30:00Z 2000", "b2 2026-03-31T22:30:00Z 9999")
	e.at("2026-04-01T01:00:00Z") // Apr 1 03:00 in Berlin: the grace ends
	e.sync()
	docs := e.finalized("sub-b")
	d := e.doc(docs[1])
	if !d.IssueAt.Equal(subTime("2026-03-31T22:00:00Z")) || !d.PeriodStart.Equal(subTime("2026-02-28T23:00:00Z")) {
		t.Errorf("period %s – %s, want Berlin midnights", d.PeriodStart, d.IssueAt)
	}
	golden(t, "berlin_dst", docs)
}

func testGoldenAnchors(t *testing.T, store string) {
	e := newInvEnv(t, store, "2024-01-29T00:00:00Z")
	e.must(201, "POST", "/v1/customers", `{"id":"acme"}`, nil)
	e.must(201, "POST", "/v1/plans", planBasic, nil)
	var all []json.RawMessage
	for _, y := range []string{"2024", "2025"} {
		for _, day := range []string{"29", "30", "31"} {
			e.at(y + "-01-" + day + "T00:00:00Z")
			id := "sub-" + y + "-" + day
			e.must(201, "POST", "/v1/subscriptions", `{"id":"`+id+`","customer":"acme","plan":"basic","billing_anchor":"anniversary"}`, nil)
		}
		e.at(y + "-04-01T00:00:00Z")
		e.sync()
		for _, day := range []string{"29", "30", "31"} {
			var issues []string
			for _, raw := range e.finalized("sub-" + y + "-" + day) {
				issues = append(issues, e.doc(raw).IssueAt.Format("01-02"))
				all = append(all, raw)
			}
			want := map[string][]string{
				"2024-29": {"01-29", "02-29", "03-29"}, "2024-30": {"01-30", "02-29", "03-30"}, "2024-31": {"01-31", "02-29", "03-31"},
				"2025-29": {"01-29", "02-28", "03-29"}, "2025-30": {"01-30", "02-28", "03-30"}, "2025-31": {"01-31", "02-28", "03-31"},
			}[y+"-"+day]
			sameStrings(t, "boundaries of "+y+"-01-"+day, issues, want)
		}
	}
	golden(t, "month_end_anchors", all)
}

// TestInvoiceLateEvents: usage arriving during the grace lands on the
// invoice; usage for a finalized period becomes an adjustment on the next
// invoice with delta = rated now − billed, exact under tiered prices, and
// the invoices add up to the rated total of all usage.
func TestInvoiceLateEvents(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { testInvoiceLateEvents(t, store) })
	}
}

func testInvoiceLateEvents(t *testing.T, store string) {
	e := newInvEnv(t, store, "2026-03-01T00:00:00Z")
	e.must(201, "POST", "/v1/meters", meterAPI, nil)
	e.must(201, "POST", "/v1/customers", `{"id":"acme"}`, nil)
	e.must(201, "POST", "/v1/plans", planGraduated, nil)
	e.must(201, "POST", "/v1/subscriptions", `{"id":"sub-l","customer":"acme","plan":"std","billing_anchor":"calendar"}`, nil)
	e.at("2026-03-31T12:00:00Z")
	e.usage("acme", "a1 2026-03-10T00:00:00Z 5000") // 8.00
	// Boundary passed, grace running: the draft is open and an event for
	// March still lands on it.
	e.at("2026-04-01T01:00:00Z")
	e.sync()
	e.usage("acme", "a2 2026-03-31T23:00:00Z 1000") // now 6000: 10.00
	e.at("2026-04-01T03:00:00Z")
	e.sync()
	march := e.doc(e.finalized("sub-l")[1])
	if march.Total != "30.00" { // 10.00 usage + April's 20.00
		t.Fatalf("March invoice total %s, want 30.00 (usage in grace included)", march.Total)
	}
	// After finalization: 6000 more for March crosses into the third tier:
	// rated now 1000×0 + 9000×0.002 + 2000×0.001 = 20.00; billed 10.00.
	e.at("2026-04-10T00:00:00Z")
	e.usage("acme", "a3 2026-03-20T00:00:00Z 6000", "a4 2026-04-05T00:00:00Z 1500") // April: 1.00
	// The finalized invoice does not move.
	e.must(200, "GET", "/v1/invoices/"+march.ID, nil, nil)
	if got := e.doc(e.finalized("sub-l")[1]); got.Total != "30.00" {
		t.Fatalf("finalized invoice changed: %s", got.Total)
	}
	e.at("2026-05-01T03:00:00Z")
	e.sync()
	docs := e.finalized("sub-l")
	april := e.doc(docs[2])
	var adj *invoice.Line
	for i, l := range april.Lines {
		if l.Kind == invoice.KindAdjustment {
			adj = &april.Lines[i]
		}
	}
	if adj == nil || adj.Amount != "10.00" || adj.Rated != "20.00" || adj.Billed != "10.00" || adj.Adjusts != invoice.KindUsage ||
		!adj.Period.Start.Equal(subTime("2026-03-01T00:00:00Z")) {
		t.Fatalf("late usage adjustment: %+v", adj)
	}
	// April: usage 1.00 + adjustment 10.00 + May in advance 20.00.
	sameStrings(t, "totals", e.totals(docs), []string{"2026-03-01T00:00Z 20.00", "2026-04-01T00:00Z 30.00", "2026-05-01T00:00Z 31.00"})
	// Sum over invoices = fees (Mar, Apr, May) + rated usage (Mar 12000 →
	// 20.00, Apr 1500 → 1.00).
	var sum apd.Decimal
	for _, raw := range docs {
		var v apd.Decimal
		if _, _, err := v.SetString(e.doc(raw).Total); err != nil {
			t.Fatal(err)
		}
		if _, err := apd.BaseContext.Add(&sum, &sum, &v); err != nil {
			t.Fatal(err)
		}
	}
	if sum.Text('f') != "81.00" {
		t.Errorf("sum over invoices %s, want 81.00 = fees 60.00 + March 20.00 + April 1.00", sum.Text('f'))
	}
	golden(t, "late_events", docs)
}

// TestInvoiceAsOfAndLifecycle: as_of reproduces a finalized invoice byte
// for byte (also after late events and a void), drafts show live totals
// and a forecast, numbers are gapless, finalized invoices are immutable,
// voids and credit notes work, and bad requests get precise errors.
func TestInvoiceAsOfAndLifecycle(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { testInvoiceAsOf(t, store) })
	}
}

func testInvoiceAsOf(t *testing.T, store string) {
	e := newInvEnv(t, store, "2026-03-01T00:00:00Z")
	e.must(201, "POST", "/v1/meters", meterAPI, nil)
	e.must(201, "POST", "/v1/customers", `{"id":"acme"}`, nil)
	e.must(201, "POST", "/v1/plans", planGraduated, nil)
	e.must(201, "POST", "/v1/subscriptions", `{"id":"sub-a","customer":"acme","plan":"std","billing_anchor":"calendar"}`, nil)
	e.at("2026-03-16T00:00:00Z")
	e.usage("acme", "x1 2026-03-02T00:00:00Z 3000")
	e.sync()
	// The draft of April 1 is live, with a forecast: 3000 in 15 of 31 days
	// → 6200 over the month → 1000 free + 5200 × 0.002 = 10.40.
	var list struct{ Invoices []*abacus.Invoice }
	e.must(200, "GET", "/v1/invoices?customer=acme&status=draft", nil, &list)
	if len(list.Invoices) != 1 {
		t.Fatalf("drafts: %d", len(list.Invoices))
	}
	var draft invoice.View
	e.must(200, "GET", "/v1/invoices/"+list.Invoices[0].ID, nil, &draft)
	if draft.Status != abacus.InvoiceDraft || draft.Total != "24.00" || draft.Forecast == nil || draft.Forecast.Total != "30.40" {
		t.Fatalf("draft: status %s total %s forecast %+v", draft.Status, draft.Total, draft.Forecast)
	}
	e.at("2026-04-01T03:00:00Z")
	e.sync()
	id := invoice.InvoiceID(abacus.DefaultTenantID, "sub-a", 1)
	var fin invoice.View
	e.must(200, "GET", "/v1/invoices/"+id, nil, &fin)
	if fin.Status != abacus.InvoiceFinalized || fin.Number != "INV-000002" {
		t.Fatalf("finalized: %s %s", fin.Status, fin.Number)
	}
	// Late event, then a void: neither changes the invoice as of its
	// finalization.
	e.at("2026-04-02T00:00:00Z")
	e.usage("acme", "x2 2026-03-30T00:00:00Z 5000")
	e.must(200, "POST", "/v1/invoices/"+id+"/void", `{"reason":"customer disputed the usage"}`, nil)
	e.at("2026-04-03T00:00:00Z")
	for _, asOf := range []time.Time{*fin.FinalizedAt, fin.FinalizedAt.Add(time.Hour)} {
		var v invoice.View
		e.must(200, "GET", "/v1/invoices/"+id+"?as_of="+subStamp(asOf), nil, &v)
		if !bytes.Equal(v.Document, fin.Document) {
			t.Fatalf("as_of %s:\n got %s\nwant %s", asOf, v.Document, fin.Document)
		}
		if v.Status != abacus.InvoiceFinalized {
			t.Errorf("as_of %s: status %s, want finalized (voided later)", asOf, v.Status)
		}
	}
	// Before finalization, as_of shows the draft as known then.
	var before invoice.View
	e.must(200, "GET", "/v1/invoices/"+id+"?as_of=2026-03-20T00:00:00Z", nil, &before)
	if before.Status != abacus.InvoiceDraft || before.Total != "24.00" {
		t.Errorf("as_of before finalization: %s %s", before.Status, before.Total)
	}
	var now invoice.View
	e.must(200, "GET", "/v1/invoices/"+id, nil, &now)
	if now.Status != abacus.InvoiceVoid || !bytes.Equal(now.Document, fin.Document) {
		t.Errorf("after void: %s", now.Status)
	}
	// Immutable: voiding twice, crediting a void invoice.
	subFails(t, e.a, 409, "POST", "/v1/invoices/"+id+"/void", `{"reason":"again"}`, "void")
	subFails(t, e.a, 409, "POST", "/v1/invoices/"+id+"/credit-notes", `{"reason":"x","lines":[{"description":"x","amount":"1.00"}]}`)
	// Bad input.
	first := invoice.InvoiceID(abacus.DefaultTenantID, "sub-a", 0)
	subFails(t, e.a, 400, "POST", "/v1/invoices/"+first+"/credit-notes", `{"reason":"","lines":[{"description":"d","amount":"1.001"},{"description":"","amount":"-2"}]}`,
		"reason: is required", "lines[0].amount: has more than the 2 decimals of USD: 1.001", "lines[1].description", "lines[1].amount: must not be negative")
	subFails(t, e.a, 409, "POST", "/v1/invoices/"+first+"/credit-notes", `{"reason":"goodwill","lines":[{"description":"d","amount":"20.01"}]}`, "20.00")
	var cn abacus.CreditNote
	e.must(201, "POST", "/v1/invoices/"+first+"/credit-notes", `{"reason":"goodwill","lines":[{"description":"Outage","amount":"5.50"}]}`, &cn)
	if cn.Number != "CN-000001" || cn.Total != "5.50" {
		t.Errorf("credit note %s %s", cn.Number, cn.Total)
	}
	subFails(t, e.a, 400, "GET", "/v1/invoices?status=paid", nil, "status: must be draft, finalized or void")
	subFails(t, e.a, 400, "GET", "/v1/invoices/"+id+"?as_of=yesterday", nil, "as_of: must be an RFC 3339 timestamp")
	subFails(t, e.a, 404, "GET", "/v1/invoices/in_nope", nil)
	subFails(t, e.a, 400, "POST", "/v1/invoices/preview", `{}`, "customer: is required")
	// The void invoice's amounts are owed again on the next invoice.
	e.at("2026-05-01T03:00:00Z")
	e.sync()
	docs := e.finalized("sub-a")
	sameStrings(t, "totals", e.totals(docs), []string{"2026-03-01T00:00Z 20.00", "2026-04-01T00:00Z 24.00", "2026-05-01T00:00Z 54.00"})
	// HTML.
	st, page := request(t, e.a, adminKey, "GET", "/v1/invoices/"+id+"/html", "", "")
	if st != 200 || !strings.Contains(page, "INV-000002") || !strings.Contains(page, "VOID") || !strings.Contains(page, "customer disputed the usage") {
		t.Errorf("html: %d %.300s", st, page)
	}
}

// TestInvoiceTestClock: a test clock advanced through three periods
// produces the three expected invoices (numbered in the clock's series),
// a late event becomes an adjustment, and each invoice is reproduced by
// as_of at its finalization.
func TestInvoiceTestClock(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { testInvoiceTestClock(t, store) })
	}
}

func testInvoiceTestClock(t *testing.T, store string) {
	e := newInvEnv(t, store, "2026-11-21T10:00:00Z") // the real clock stays here
	e.must(201, "POST", "/v1/meters", meterAPI, nil)
	e.must(201, "POST", "/v1/plans", planGraduated, nil)
	e.must(201, "POST", "/v1/test-clocks", `{"id":"tc1","name":"renewals","now":"2027-01-01T00:00:00Z"}`, nil)
	e.must(201, "POST", "/v1/customers", `{"id":"sim","test_clock":"tc1"}`, nil)
	e.must(201, "POST", "/v1/subscriptions", `{"id":"sub-t","customer":"sim","plan":"std","billing_anchor":"calendar"}`, nil)
	e.simulated = true
	type advanced struct {
		TestClock abacus.TestClock  `json:"test_clock"`
		Finalized []*abacus.Invoice `json:"finalized"`
	}
	advance := func(to string, want int) {
		t.Helper()
		var adv advanced
		e.must(200, "POST", "/v1/test-clocks/tc1/advance", `{"to":"`+to+`"}`, &adv)
		if len(adv.Finalized) != want || !adv.TestClock.Now.Equal(subTime(to)) {
			t.Fatalf("advance to %s: clock %s, %d finalized, want %d", to, adv.TestClock.Now, len(adv.Finalized), want)
		}
		e.clock.Add(time.Minute) // real time passes too
	}
	advance("2027-01-01T03:00:00Z", 1)
	advance("2027-01-20T00:00:00Z", 0)
	// Events in the clock's time are accepted (the real clock is in 2026).
	e.usage("sim", "t1 2027-01-05T00:00:00Z 2000")
	advance("2027-02-01T03:00:00Z", 1)
	advance("2027-02-20T00:00:00Z", 0)
	// A late event for January, and February's usage.
	e.usage("sim", "t2 2027-01-31T00:00:00Z 9000", "t3 2027-02-10T00:00:00Z 3000")
	advance("2027-03-20T00:00:00Z", 1)
	e.usage("sim", "t4 2027-03-03T00:00:00Z 500")
	advance("2027-04-01T03:00:00Z", 1)
	st, resp := request(t, e.a, adminKey, "POST", "/v1/events", "application/json", `{"id":"t5","type":"api","customer":"sim","time":"2026-01-21T10:00:00Z","properties":{"n":1}}`)
	if st != 400 || !strings.Contains(resp, "older than the backdating window") {
		t.Errorf("an event in real time for a simulated customer: %d %s", st, resp)
	}
	docs := e.finalized("sub-t")
	// Jan 1 (advance 20.00); Feb 1: Jan 2000 → 2.00 + 20.00; Mar 1: Jan
	// late 11000 → 19.00 − 2.00 = 17.00, Feb 3000 → 4.00, 20.00; Apr 1:
	// Mar 500 → 0.00 + 20.00.
	sameStrings(t, "totals", e.totals(docs), []string{"2027-01-01T00:00Z 20.00", "2027-02-01T00:00Z 22.00", "2027-03-01T00:00Z 41.00", "2027-04-01T00:00Z 20.00"})
	var numbers []string
	for _, raw := range docs {
		d := e.doc(raw)
		numbers = append(numbers, d.Number)
		var v invoice.View
		e.must(200, "GET", "/v1/invoices/"+d.ID+"?as_of="+subStamp(*d.FinalizedAt), nil, &v)
		if !bytes.Equal(v.Document, raw) {
			t.Errorf("as_of %s of %s:\n got %s\nwant %s", d.FinalizedAt, d.Number, v.Document, raw)
		}
	}
	sameStrings(t, "numbers", numbers, []string{"TEST-tc1-000001", "TEST-tc1-000002", "TEST-tc1-000003", "TEST-tc1-000004"})
	subFails(t, e.a, 400, "POST", "/v1/test-clocks/tc1/advance", `{"to":"2027-01-01T00:00:00Z"}`)
	golden(t, "test_clock", docs)
}

// TestInvoiceTwoSchedulers: two schedulers, each with its own connection
// pool on the same PostgreSQL schema, run at once over many subscriptions
// and periods: every invoice exists once, numbers are 1..n without gaps.
func TestInvoiceTwoSchedulers(t *testing.T) {
	e := newInvEnv(t, "postgres", "2026-01-01T00:00:00Z")
	e.must(201, "POST", "/v1/meters", meterAPI, nil)
	e.must(201, "POST", "/v1/plans", planGraduated, nil)
	const subs = 12
	for i := 0; i < subs; i++ {
		e.must(201, "POST", "/v1/customers", fmt.Sprintf(`{"id":"c%d"}`, i), nil)
		e.must(201, "POST", "/v1/subscriptions", fmt.Sprintf(`{"id":"s%d","customer":"c%d","plan":"std","billing_anchor":"calendar"}`, i, i), nil)
	}
	e.at("2026-03-20T00:00:00Z")
	e.usage("c0", "p1 2026-02-10T00:00:00Z 5000")
	other, err := postgres.Open(context.Background(), e.a.Config.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	svcs := []*invoice.Service{e.a.Invoices, invoice.NewService(other, e.clock, nil)}
	e.at("2026-06-01T04:00:00Z")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for _, s := range svcs {
		for r := 0; r < 2; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Tick(context.Background()); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	invs, err := e.a.Store.ListInvoices(context.Background(), abacus.InvoiceFilter{TenantID: abacus.DefaultTenantID, Status: abacus.InvoiceFinalized})
	if err != nil {
		t.Fatal(err)
	}
	// Boundaries Jan 1 … Jun 1: 6 per subscription.
	if len(invs) != subs*6 {
		t.Fatalf("%d finalized invoices, want %d", len(invs), subs*6)
	}
	seen := map[string]bool{}
	for _, inv := range invs {
		seen[inv.Number] = true
	}
	for n := 1; n <= subs*6; n++ {
		if !seen[abacus.InvoiceNumber("", int64(n))] {
			t.Errorf("number %d missing", n)
		}
	}
}
