package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/app"
	"github.com/abacus-billing/abacus/httpapi"
	"github.com/abacus-billing/abacus/subscription"
)

// subTestClock is a clock the test moves by hand.
type subTestClock struct{ p atomic.Pointer[time.Time] }

func newSubTestClock(t0 time.Time) *subTestClock {
	c := &subTestClock{}
	c.Set(t0)
	return c
}

func (c *subTestClock) Now() time.Time      { return *c.p.Load() }
func (c *subTestClock) Set(t time.Time)     { t = t.UTC(); c.p.Store(&t) }
func (c *subTestClock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// startSubs is startWithClock with a gap-alert bound (Config.GapAlertAfter,
// the --subscription-gap-alert flag); 0 keeps the default.
func startSubs(t *testing.T, store string, clock abacus.Clock, gapAlert time.Duration) *app.App {
	t.Helper()
	return startWith(t, store, func(c *app.Config) {
		c.Clock = clock
		if gapAlert > 0 {
			c.GapAlertAfter = gapAlert
		}
	})
}

// api does one request with the admin key; body is marshalled unless it is
// a string.
func subAPI(t *testing.T, a *app.App, method, path string, body any) (int, string) {
	t.Helper()
	return subAPIKey(t, a, adminKey, method, path, body)
}

func subAPIKey(t *testing.T, a *app.App, key, method, path string, body any) (int, string) {
	t.Helper()
	raw, ok := body.(string)
	if !ok && body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		raw = string(b)
	}
	ct := ""
	if raw != "" {
		ct = "application/json"
	}
	return request(t, a, key, method, path, ct, raw)
}

// must does a request that must answer want and decodes the body into out.
func subMust(t *testing.T, a *app.App, want int, method, path string, body, out any) string {
	t.Helper()
	st, resp := subAPI(t, a, method, path, body)
	if st != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, resp)
	}
	if out != nil {
		// Decode into a zero value: json.Unmarshal keeps whatever the
		// JSON omits (omitempty fields, reused slice elements).
		reflect.ValueOf(out).Elem().SetZero()
		if err := json.Unmarshal([]byte(resp), out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, resp, err)
		}
	}
	return resp
}

// fails does a request that must fail with status and an error message
// containing every part of wantIn (compared unescaped).
func subFails(t *testing.T, a *app.App, status int, method, path string, body any, wantIn ...string) string {
	t.Helper()
	st, resp := subAPI(t, a, method, path, body)
	return subFailsWith(t, method+" "+path, st, resp, status, wantIn...)
}

func subFailsWith(t *testing.T, what string, st int, resp string, status int, wantIn ...string) string {
	t.Helper()
	var eb httpapi.ErrorBody
	if err := json.Unmarshal([]byte(resp), &eb); err != nil || eb.Error.Message == "" {
		t.Fatalf("%s: status %d, not an error body: %s", what, st, resp)
	}
	if st != status {
		t.Fatalf("%s: status %d, want %d: %s", what, st, status, resp)
	}
	for _, w := range wantIn {
		if !strings.Contains(eb.Error.Message, w) {
			t.Fatalf("%s: message %q lacks %q", what, eb.Error.Message, w)
		}
	}
	return eb.Error.Message
}

func subTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func subStamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func subStampP(t *time.Time) string {
	if t == nil {
		return "open"
	}
	return subStamp(*t)
}

// phaseLines renders phases as "plan vN from..to [discounts] trial".
func phaseLines(ps []abacus.Phase) []string {
	var out []string
	for _, p := range ps {
		out = append(out, phaseLine(&p))
	}
	return out
}

func phaseLine(p *abacus.Phase) string {
	if p == nil {
		return "none"
	}
	s := fmt.Sprintf("%s v%d %s..%s", p.Plan.Key, p.Plan.Version, subStamp(p.From), subStampP(p.To))
	for _, d := range p.Discounts {
		s += " -" + d.Key
	}
	if p.Trial {
		s += " trial"
	}
	return s
}

// chargeLines renders charge records as
// "item plan vN amount|meter@price from..to [-discount%]".
func chargeLines(cs []*abacus.Charge) []string {
	out := []string{}
	for _, c := range cs {
		what := c.Amount + " " + string(c.Timing)
		if c.Type == abacus.ChargeUsage {
			var p struct {
				UnitPrice string `json:"unit_price"`
			}
			_ = json.Unmarshal(c.Price, &p)
			what = c.Meter + "@" + p.UnitPrice
		}
		s := fmt.Sprintf("%s %s v%d %s %s %s..%s", c.Item, c.Plan.Key, c.Plan.Version, c.Currency, what, subStamp(c.StartsAt), subStampP(c.EndsAt))
		for _, d := range c.Discounts {
			s += " -" + d.Key + ":" + d.Percent + d.Amount
		}
		if c.Trial {
			s += " trial"
		}
		out = append(out, s)
	}
	return out
}

func prorationLines(ps []subscription.Proration) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s %s %s..%s %s %s of %s %s", p.Item, p.Plan, subStamp(p.From), subStamp(p.To), p.Days, p.Amount, p.FullAmount, p.Currency))
	}
	return out
}

func sameSubLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if got == nil {
		got = []string{}
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got  %s\n want %s", what, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

func subCharges(t *testing.T, a *app.App, sub, query string) httpapi.ChargesResponse {
	t.Helper()
	var cr httpapi.ChargesResponse
	path := "/v1/subscriptions/" + sub + "/charges"
	if query != "" {
		path += "?" + query
	}
	subMust(t, a, 200, "GET", path, nil, &cr)
	return cr
}

const (
	meterCalls = `{"key":"calls","event_type":"api","aggregation":"count"}`
	planBasic1 = `{"key":"basic","name":"Basic","currency":"eur","interval":"month","charges":[
		{"key":"base","type":"recurring","amount":"10.00"},
		{"key":"calls","type":"usage","meter":"calls","price":{"version":1,"currency":"EUR","model":"per_unit","unit_price":"0.01"}}]}`
	planBasic2 = `{"key":"basic","name":"Basic","currency":"EUR","interval":"month","charges":[
		{"key":"base","type":"recurring","amount":"12"},
		{"key":"calls","type":"usage","meter":"calls","price":{"version":1,"currency":"EUR","model":"per_unit","unit_price":"0.01"}}]}`
	planPro = `{"key":"pro","name":"Pro","currency":"EUR","interval":"month","charges":[
		{"key":"base","type":"recurring","amount":"30"},
		{"key":"calls","type":"usage","meter":"calls","price":{"version":1,"currency":"EUR","model":"per_unit","unit_price":"0.005"}}]}`
	planUSD    = `{"key":"usd","currency":"USD","interval":"month","charges":[{"key":"base","type":"recurring","amount":"5"}]}`
	planAnnual = `{"key":"annual","currency":"EUR","interval":"year","charges":[{"key":"base","type":"recurring","amount":"100"}]}`
)

// TestSubscriptionLifecycle drives the whole subscription flow over HTTP
// with a test clock: plans and their versions, a calendar-anchored
// subscription in Europe/Berlin, an upgrade (effective now) and a
// downgrade (effective at the period end in the customer's zone), charges
// in force at several instants and as known at past moments, a late
// (backdated) discount, its removal, a cancel at the period end and a
// change after that end, on both stores.
func TestSubscriptionLifecycle(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { testSubscriptionLifecycle(t, store) })
	}
}

func testSubscriptionLifecycle(t *testing.T, store string) {
	clock := newSubTestClock(subTime("2026-01-15T10:00:00Z"))
	a := startSubs(t, store, clock, 0)

	subMust(t, a, 201, "POST", "/v1/meters", meterCalls, nil)
	subMust(t, a, 201, "POST", "/v1/customers", `{"id":"c-berlin","name":"Berlin GmbH","time_zone":"Europe/Berlin","currency":"EUR"}`, nil)
	subMust(t, a, 201, "POST", "/v1/customers", `{"id":"c-utc","name":"UTC Ltd"}`, nil)

	// Plans: the first publication of a key is version 1, normalised.
	var basic1 abacus.Plan
	subMust(t, a, 201, "POST", "/v1/plans", planBasic1, &basic1)
	if basic1.Key != "basic" || basic1.Version != 1 || basic1.Currency != "EUR" || basic1.IntervalCount != 1 ||
		basic1.Charges[0].Timing != abacus.InAdvance || basic1.Charges[0].Amount != "10" ||
		string(basic1.Charges[1].Price) != `{"version":1,"currency":"EUR","model":"per_unit","unit_price":"0.01"}` ||
		!basic1.CreatedAt.Equal(subTime("2026-01-15T10:00:00Z")) {
		t.Fatalf("basic v1 = %+v", basic1)
	}
	var pro abacus.Plan
	subMust(t, a, 201, "POST", "/v1/plans", planPro, &pro)
	if pro.Version != 1 {
		t.Fatalf("pro version %d", pro.Version)
	}
	subMust(t, a, 201, "POST", "/v1/plans", planUSD, nil)
	subMust(t, a, 201, "POST", "/v1/plans", planAnnual, nil)

	// A calendar-anchored subscription on the latest basic (v1), started now.
	var sub httpapi.SubscriptionResponse
	subMust(t, a, 201, "POST", "/v1/subscriptions", `{"id":"sub-1","customer":"c-berlin","plan":"basic","billing_anchor":"calendar"}`, &sub)
	if sub.ID != "sub-1" || sub.CustomerID != "c-berlin" || sub.Status != "active" || sub.Currency != "EUR" || sub.TimeZone != "Europe/Berlin" ||
		sub.Interval != abacus.IntervalMonth || sub.IntervalCount != 1 || sub.Anchor != "calendar" || sub.Version != 1 ||
		!sub.StartAt.Equal(subTime("2026-01-15T10:00:00Z")) ||
		// Jan 1 00:00 in Berlin (CET, UTC+1).
		!sub.AnchorAt.Equal(subTime("2025-12-31T23:00:00Z")) || sub.EndsAt != nil || sub.TrialEndsAt != nil {
		t.Fatalf("created = %+v", sub)
	}
	if got := phaseLine(sub.Current); got != "basic v1 2026-01-15T10:00:00Z..open" {
		t.Fatalf("current phase %s", got)
	}
	startEvent := sub.LastEventID

	// Publishing basic again creates version 2; sub-1 stays on v1.
	var basic2 abacus.Plan
	subMust(t, a, 201, "POST", "/v1/plans", planBasic2, &basic2)
	if basic2.Version != 2 || basic2.Charges[0].Amount != "12" {
		t.Fatalf("basic v2 = %+v", basic2)
	}
	var p abacus.Plan
	subMust(t, a, 200, "GET", "/v1/plans/basic", nil, &p)
	if p.Version != 2 || p.Charges[0].Amount != "12" {
		t.Fatalf("latest basic = %+v", p)
	}
	subMust(t, a, 200, "GET", "/v1/plans/basic?version=1", nil, &p)
	if p.Version != 1 || p.Charges[0].Amount != "10" {
		t.Fatalf("basic?version=1 = %+v", p)
	}
	var versions struct{ Versions []abacus.Plan }
	subMust(t, a, 200, "GET", "/v1/plans/basic/versions", nil, &versions)
	if len(versions.Versions) != 2 || versions.Versions[0].Version != 1 || versions.Versions[1].Version != 2 ||
		versions.Versions[0].Charges[0].Amount != "10" || versions.Versions[1].Charges[0].Amount != "12" {
		t.Fatalf("versions = %+v", versions)
	}
	var plans struct{ Plans []abacus.Plan }
	subMust(t, a, 200, "GET", "/v1/plans", nil, &plans)
	var listed []string
	for _, p := range plans.Plans {
		listed = append(listed, fmt.Sprintf("%s v%d", p.Key, p.Version))
	}
	sameSubLines(t, "GET /v1/plans", listed, []string{"annual v1", "basic v2", "pro v1", "usd v1"})

	subMust(t, a, 200, "GET", "/v1/subscriptions/sub-1", nil, &sub)
	if sub.Status != "active" || phaseLine(sub.Current) != "basic v1 2026-01-15T10:00:00Z..open" || len(sub.Phases) != 1 {
		t.Fatalf("sub-1 after basic v2 = %+v %s", sub, phaseLine(sub.Current))
	}
	if len(sub.Events) != 1 || len(sub.Held) != 0 {
		t.Fatalf("events %d held %d", len(sub.Events), len(sub.Held))
	}
	ev := sub.Events[0]
	if ev.ID != startEvent || ev.Type != abacus.SubStart || ev.Version != 1 || ev.Status != abacus.SubEventApplied || ev.Source != "api" ||
		*ev.Plan != (abacus.PlanRef{Key: "basic", Version: 1}) || ev.Anchor != "calendar" || ev.TimeZone != "Europe/Berlin" ||
		!ev.EffectiveAt.Equal(subTime("2026-01-15T10:00:00Z")) || ev.AppliedAt == nil || !ev.AppliedAt.Equal(subTime("2026-01-15T10:00:00Z")) {
		t.Fatalf("start event = %+v", ev.SubscriptionEventRecord)
	}

	// Same plan and version: a conflict.
	subFails(t, a, 409, "POST", "/v1/subscriptions/sub-1/change", `{"plan":"basic","plan_version":1}`,
		"subscription sub-1 is already on plan basic v1 at 2026-01-15T10:00:00Z")

	// Upgrade without timing: effective now.
	clock.Set(subTime("2026-01-20T12:00:00Z"))
	subMust(t, a, 200, "POST", "/v1/subscriptions/sub-1/change", `{"plan":"pro"}`, &sub)
	sameSubLines(t, "phases after upgrade", phaseLines(sub.Phases), []string{
		"basic v1 2026-01-15T10:00:00Z..2026-01-20T12:00:00Z",
		"pro v1 2026-01-20T12:00:00Z..open",
	})
	if sub.Version != 2 || phaseLine(sub.Current) != "pro v1 2026-01-20T12:00:00Z..open" {
		t.Fatalf("after upgrade: version %d current %s", sub.Version, phaseLine(sub.Current))
	}

	// Downgrade (basic, latest = v2: 12 < 30) without timing: effective at
	// the end of the period in progress, Feb 1 00:00 in Berlin.
	clock.Set(subTime("2026-01-20T12:30:00Z"))
	subMust(t, a, 200, "POST", "/v1/subscriptions/sub-1/change", `{"plan":"basic"}`, &sub)
	sameSubLines(t, "phases after downgrade", phaseLines(sub.Phases), []string{
		"basic v1 2026-01-15T10:00:00Z..2026-01-20T12:00:00Z",
		"pro v1 2026-01-20T12:00:00Z..2026-01-31T23:00:00Z",
		"basic v2 2026-01-31T23:00:00Z..open",
	})
	if sub.Version != 3 || phaseLine(sub.Current) != "pro v1 2026-01-20T12:00:00Z..2026-01-31T23:00:00Z" {
		t.Fatalf("after downgrade: version %d current %s", sub.Version, phaseLine(sub.Current))
	}
	// The pending downgrade is the last phase: changing to it again conflicts.
	subFails(t, a, 409, "POST", "/v1/subscriptions/sub-1/change", `{"plan":"basic"}`,
		"already on plan basic v2 at 2026-01-31T23:00:00Z")

	// Charges in force at several instants.
	base1 := "base basic v1 EUR 10 advance 2026-01-15T10:00:00Z..2026-01-20T12:00:00Z"
	calls1 := "calls basic v1 EUR calls@0.01 2026-01-15T10:00:00Z..2026-01-20T12:00:00Z"
	basePro := "base pro v1 EUR 30 advance 2026-01-20T12:00:00Z..2026-01-31T23:00:00Z"
	callsPro := "calls pro v1 EUR calls@0.005 2026-01-20T12:00:00Z..2026-01-31T23:00:00Z"
	base2 := "base basic v2 EUR 12 advance 2026-01-31T23:00:00Z..open"
	calls2 := "calls basic v2 EUR calls@0.01 2026-01-31T23:00:00Z..open"
	cr := subCharges(t, a, "sub-1", "")
	sameSubLines(t, "all charges", chargeLines(cr.Charges), []string{base1, basePro, base2, calls1, callsPro, calls2})
	sameSubLines(t, "all prorations", prorationLines(cr.Prorations), []string{
		"base basic v1 2026-01-15T10:00:00Z..2026-01-20T12:00:00Z 5/31 1.61 of 10 EUR",
		"base pro v1 2026-01-20T12:00:00Z..2026-01-31T23:00:00Z 12/31 11.61 of 30 EUR",
	})
	for _, c := range cr.Charges {
		if c.SubscriptionID != "sub-1" || c.CustomerID != "c-berlin" || c.RecordedAt.IsZero() || c.SupersededAt != nil || !strings.HasPrefix(c.ID, "chg_") {
			t.Fatalf("charge record %+v", c)
		}
	}
	sameSubLines(t, "charges before the start", chargeLines(subCharges(t, a, "sub-1", "at=2026-01-15T09:59:59Z").Charges), nil)
	sameSubLines(t, "charges at the start", chargeLines(subCharges(t, a, "sub-1", "at=2026-01-15T10:00:00Z").Charges), []string{base1, calls1})
	sameSubLines(t, "charges just before the upgrade", chargeLines(subCharges(t, a, "sub-1", "at=2026-01-20T11:59:59.999Z").Charges), []string{base1, calls1})
	sameSubLines(t, "charges at the upgrade", chargeLines(subCharges(t, a, "sub-1", "at=2026-01-20T12:00:00Z").Charges), []string{basePro, callsPro})
	cr = subCharges(t, a, "sub-1", "at=2026-01-31T23:00:00Z")
	sameSubLines(t, "charges at the downgrade", chargeLines(cr.Charges), []string{base2, calls2})
	if cr.At == nil || !cr.At.Equal(subTime("2026-01-31T23:00:00Z")) || cr.AsOf != nil {
		t.Fatalf("at/as_of echoed as %v %v", cr.At, cr.AsOf)
	}
	sameSubLines(t, "charges far in the future", chargeLines(subCharges(t, a, "sub-1", "at=2031-06-01T00:00:00Z").Charges), []string{base2, calls2})

	// As known before the downgrade was applied (12:30): pro open-ended.
	basePro0 := "base pro v1 EUR 30 advance 2026-01-20T12:00:00Z..open"
	callsPro0 := "calls pro v1 EUR calls@0.005 2026-01-20T12:00:00Z..open"
	sameSubLines(t, "as of 12:15", chargeLines(subCharges(t, a, "sub-1", "as_of=2026-01-20T12:15:00Z").Charges), []string{base1, basePro0, calls1, callsPro0})
	sameSubLines(t, "at 2031 as of 12:15", chargeLines(subCharges(t, a, "sub-1", "at=2031-06-01T00:00:00Z&as_of=2026-01-20T12:15:00Z").Charges), []string{basePro0, callsPro0})
	// As known before the upgrade: basic v1 open-ended; nothing before the
	// subscription was created.
	base10 := "base basic v1 EUR 10 advance 2026-01-15T10:00:00Z..open"
	calls10 := "calls basic v1 EUR calls@0.01 2026-01-15T10:00:00Z..open"
	cr = subCharges(t, a, "sub-1", "as_of=2026-01-18T00:00:00Z")
	sameSubLines(t, "as of Jan 18", chargeLines(cr.Charges), []string{base10, calls10})
	if cr.AsOf == nil || !cr.AsOf.Equal(subTime("2026-01-18T00:00:00Z")) {
		t.Fatalf("as_of echoed as %v", cr.AsOf)
	}
	sameSubLines(t, "as of before creation", chargeLines(subCharges(t, a, "sub-1", "as_of=2026-01-15T09:00:00Z").Charges), nil)

	// A late discount: applied on Jan 22, effective since Jan 18 00:00 Berlin.
	clock.Set(subTime("2026-01-22T10:00:00Z"))
	subMust(t, a, 200, "POST", "/v1/subscriptions/sub-1/discounts", `{"discount":{"key":"welcome","percent":"10.0"},"effective_at":"2026-01-18T00:00:00+01:00"}`, &sub)
	sameSubLines(t, "phases after the discount", phaseLines(sub.Phases), []string{
		"basic v1 2026-01-15T10:00:00Z..2026-01-17T23:00:00Z",
		"basic v1 2026-01-17T23:00:00Z..2026-01-20T12:00:00Z -welcome",
		"pro v1 2026-01-20T12:00:00Z..2026-01-31T23:00:00Z -welcome",
		"basic v2 2026-01-31T23:00:00Z..open -welcome",
	})
	base1a := "base basic v1 EUR 10 advance 2026-01-15T10:00:00Z..2026-01-17T23:00:00Z"
	base1b := "base basic v1 EUR 10 advance 2026-01-17T23:00:00Z..2026-01-20T12:00:00Z -welcome:10"
	sameSubLines(t, "charges at Jan 19", chargeLines(subCharges(t, a, "sub-1", "at=2026-01-19T00:00:00Z").Charges), []string{
		base1b, "calls basic v1 EUR calls@0.01 2026-01-17T23:00:00Z..2026-01-20T12:00:00Z -welcome:10"})
	// Before the late event was applied, Jan 19 had no discount.
	sameSubLines(t, "charges at Jan 19 as of Jan 21", chargeLines(subCharges(t, a, "sub-1", "at=2026-01-19T00:00:00Z&as_of=2026-01-21T00:00:00Z").Charges), []string{base1, calls1})
	sameSubLines(t, "charges at Jan 16", chargeLines(subCharges(t, a, "sub-1", "at=2026-01-16T00:00:00Z").Charges), []string{
		base1a, "calls basic v1 EUR calls@0.01 2026-01-15T10:00:00Z..2026-01-17T23:00:00Z"})
	// The superseded records are still there, as known before.
	cr = subCharges(t, a, "sub-1", "as_of=2026-01-22T09:59:59Z")
	sameSubLines(t, "as of just before the discount", chargeLines(cr.Charges), []string{base1, basePro, base2, calls1, callsPro, calls2})

	// Remove it from Jan 25 00:00 Berlin.
	clock.Set(subTime("2026-01-22T11:00:00Z"))
	subMust(t, a, 200, "DELETE", "/v1/subscriptions/sub-1/discounts/welcome?effective_at=2026-01-24T23:00:00Z", nil, &sub)
	sameSubLines(t, "phases after removing the discount", phaseLines(sub.Phases), []string{
		"basic v1 2026-01-15T10:00:00Z..2026-01-17T23:00:00Z",
		"basic v1 2026-01-17T23:00:00Z..2026-01-20T12:00:00Z -welcome",
		"pro v1 2026-01-20T12:00:00Z..2026-01-24T23:00:00Z -welcome",
		"pro v1 2026-01-24T23:00:00Z..2026-01-31T23:00:00Z",
		"basic v2 2026-01-31T23:00:00Z..open",
	})
	subFails(t, a, 409, "DELETE", "/v1/subscriptions/sub-1/discounts/welcome?effective_at=2026-01-28T00:00:00Z", nil,
		`discount "welcome" is not in force at 2026-01-28T00:00:00Z`)
	subFails(t, a, 409, "DELETE", "/v1/subscriptions/sub-1/discounts/nope", nil, `discount "nope" is not in force at 2026-01-22T11:00:00Z`)

	// Cancel at the period end: Feb 1 00:00 Berlin; the pending downgrade
	// no longer takes effect.
	subMust(t, a, 200, "POST", "/v1/subscriptions/sub-1/cancel", `{"timing":"period_end"}`, &sub)
	if sub.EndsAt == nil || !sub.EndsAt.Equal(subTime("2026-01-31T23:00:00Z")) || sub.Status != "active" || sub.Version != 6 {
		t.Fatalf("after cancel: %+v", sub.Subscription)
	}
	sameSubLines(t, "phases after cancel", phaseLines(sub.Phases), []string{
		"basic v1 2026-01-15T10:00:00Z..2026-01-17T23:00:00Z",
		"basic v1 2026-01-17T23:00:00Z..2026-01-20T12:00:00Z -welcome",
		"pro v1 2026-01-20T12:00:00Z..2026-01-24T23:00:00Z -welcome",
		"pro v1 2026-01-24T23:00:00Z..2026-01-31T23:00:00Z",
	})
	cancelEvent := sub.LastEventID
	cr = subCharges(t, a, "sub-1", "")
	sameSubLines(t, "final charges", chargeLines(cr.Charges), []string{
		base1a, base1b,
		"base pro v1 EUR 30 advance 2026-01-20T12:00:00Z..2026-01-24T23:00:00Z -welcome:10",
		"base pro v1 EUR 30 advance 2026-01-24T23:00:00Z..2026-01-31T23:00:00Z",
		"calls basic v1 EUR calls@0.01 2026-01-15T10:00:00Z..2026-01-17T23:00:00Z",
		"calls basic v1 EUR calls@0.01 2026-01-17T23:00:00Z..2026-01-20T12:00:00Z -welcome:10",
		"calls pro v1 EUR calls@0.005 2026-01-20T12:00:00Z..2026-01-24T23:00:00Z -welcome:10",
		"calls pro v1 EUR calls@0.005 2026-01-24T23:00:00Z..2026-01-31T23:00:00Z",
	})
	sameSubLines(t, "final prorations", prorationLines(cr.Prorations), []string{
		"base basic v1 2026-01-15T10:00:00Z..2026-01-17T23:00:00Z 3/31 0.97 of 10 EUR",
		"base basic v1 2026-01-17T23:00:00Z..2026-01-20T12:00:00Z 2/31 0.65 of 10 EUR",
		"base pro v1 2026-01-20T12:00:00Z..2026-01-24T23:00:00Z 5/31 4.84 of 30 EUR",
		"base pro v1 2026-01-24T23:00:00Z..2026-01-31T23:00:00Z 7/31 6.77 of 30 EUR",
	})
	sameSubLines(t, "charges after the end", chargeLines(subCharges(t, a, "sub-1", "at=2026-01-31T23:00:00Z").Charges), nil)
	// Every record ever written is still readable as known at its time:
	// Jan 22 10:30 is after the discount and before its removal.
	sameSubLines(t, "charges at Feb 5 as of Jan 22 10:30", chargeLines(subCharges(t, a, "sub-1", "at=2026-02-05T00:00:00Z&as_of=2026-01-22T10:30:00Z").Charges), []string{
		"base basic v2 EUR 12 advance 2026-01-31T23:00:00Z..open -welcome:10",
		"calls basic v2 EUR calls@0.01 2026-01-31T23:00:00Z..open -welcome:10",
	})

	// A change after the end is refused, naming the end.
	subFails(t, a, 409, "POST", "/v1/subscriptions/sub-1/change", `{"plan":"basic","effective_at":"2026-02-05T00:00:00Z"}`,
		"the subscription ends at 2026-01-31T23:00:00Z", "(event "+cancelEvent+")", "a change effective at 2026-02-05T00:00:00Z is not before its end")
	t.Run("change after the end to the last phase's plan", func(t *testing.T) {
		msg := subFails(t, a, 409, "POST", "/v1/subscriptions/sub-1/change", `{"plan":"pro","effective_at":"2026-02-05T00:00:00Z"}`)
		if !strings.Contains(msg, "the subscription ends at 2026-01-31T23:00:00Z") {
			t.Fatal("subscription/commands.go Processor.Change's same-plan check ignores EndsAt: a change after the end to the plan of the last phase " +
				"answers " + msg + ", though the subscription is on no plan then (it ends at 2026-01-31T23:00:00Z)")
		}
	})
	subFails(t, a, 409, "POST", "/v1/subscriptions/sub-1/discounts", `{"discount":{"key":"late","amount":"1"},"effective_at":"2026-01-31T23:00:00Z"}`,
		"the subscription ends at 2026-01-31T23:00:00Z", "a discount effective at 2026-01-31T23:00:00Z is not before its end")
	// Nothing was appended by the refused commands.
	subMust(t, a, 200, "GET", "/v1/subscriptions/sub-1", nil, &sub)
	var gotEvents []string
	for _, e := range sub.Events {
		gotEvents = append(gotEvents, fmt.Sprintf("v%d %s %s %s", e.Version, e.Type, e.Status, subStamp(e.EffectiveAt)))
	}
	sameSubLines(t, "history", gotEvents, []string{
		"v1 start applied 2026-01-15T10:00:00Z",
		"v2 change applied 2026-01-20T12:00:00Z",
		"v3 change applied 2026-01-31T23:00:00Z",
		"v4 discount applied 2026-01-17T23:00:00Z",
		"v5 remove_discount applied 2026-01-24T23:00:00Z",
		"v6 cancel applied 2026-01-31T23:00:00Z",
	})

	// A second subscription of the same customer, starting next month:
	// pending until then; the customer's versions continue.
	subMust(t, a, 201, "POST", "/v1/subscriptions", `{"id":"sub-2","customer":"c-berlin","plan":"pro","start_at":"2026-02-01T00:00:00+01:00","billing_anchor":"anniversary"}`, &sub)
	if sub.Status != "pending" || sub.Current != nil || sub.Version != 7 || !sub.AnchorAt.Equal(subTime("2026-01-31T23:00:00Z")) {
		t.Fatalf("sub-2 = %+v", sub)
	}
	// A change "now" of a pending subscription takes effect at its start.
	subMust(t, a, 200, "POST", "/v1/subscriptions/sub-2/change", `{"plan":"basic","timing":"now"}`, &sub)
	sameSubLines(t, "sub-2 phases", phaseLines(sub.Phases), []string{"basic v2 2026-01-31T23:00:00Z..open"})
	var list struct {
		Subscriptions []httpapi.SubscriptionResponse
	}
	subMust(t, a, 200, "GET", "/v1/customers/c-berlin/subscriptions", nil, &list)
	var got []string
	for _, s := range list.Subscriptions {
		got = append(got, fmt.Sprintf("%s %s %s v%d", s.ID, s.Status, phaseLine(s.Current), s.Version))
	}
	sameSubLines(t, "customer subscriptions on Jan 22", got, []string{
		"sub-1 active pro v1 2026-01-20T12:00:00Z..2026-01-24T23:00:00Z -welcome v6",
		"sub-2 pending none v8",
	})
	clock.Set(subTime("2026-02-02T00:00:00Z"))
	subMust(t, a, 200, "GET", "/v1/customers/c-berlin/subscriptions", nil, &list)
	got = nil
	for _, s := range list.Subscriptions {
		got = append(got, fmt.Sprintf("%s %s %s v%d", s.ID, s.Status, phaseLine(s.Current), s.Version))
	}
	sameSubLines(t, "customer subscriptions on Feb 2", got, []string{
		"sub-1 canceled none v6",
		"sub-2 active basic v2 2026-01-31T23:00:00Z..open v8",
	})
	subMust(t, a, 200, "GET", "/v1/customers/c-utc/subscriptions", nil, &list)
	if len(list.Subscriptions) != 0 {
		t.Fatalf("c-utc has %d subscriptions", len(list.Subscriptions))
	}
	subMust(t, a, 200, "GET", "/v1/customers/c-nobody/subscriptions", nil, &list)
	if len(list.Subscriptions) != 0 {
		t.Fatalf("c-nobody has %d subscriptions", len(list.Subscriptions))
	}

	// Idempotent commands: a repeated event_id returns the first result
	// and appends nothing, whatever the repeat says.
	clock.Set(subTime("2026-02-03T00:00:00Z"))
	subMust(t, a, 201, "POST", "/v1/subscriptions", `{"id":"sub-u","customer":"c-utc","plan":"basic","plan_version":1,"start_at":"2026-01-10T00:00:00Z","billing_anchor":"anniversary"}`, &sub)
	if sub.Version != 1 || !sub.AnchorAt.Equal(subTime("2026-01-10T00:00:00Z")) || sub.TimeZone != "UTC" || phaseLine(sub.Current) != "basic v1 2026-01-10T00:00:00Z..open" {
		t.Fatalf("sub-u = %+v", sub)
	}
	subMust(t, a, 200, "POST", "/v1/subscriptions/sub-u/discounts", `{"event_id":"ev-retry","discount":{"key":"loyal","percent":"20"}}`, &sub)
	if sub.Version != 2 || phaseLine(sub.Current) != "basic v1 2026-02-03T00:00:00Z..open -loyal" {
		t.Fatalf("after discount: %+v", sub)
	}
	clock.Add(time.Hour)
	subMust(t, a, 200, "POST", "/v1/subscriptions/sub-u/discounts", `{"event_id":"ev-retry","discount":{"key":"loyal","percent":"50"}}`, &sub)
	if sub.Version != 2 || sub.LastEventID != "ev-retry" || len(sub.Current.Discounts) != 1 || sub.Current.Discounts[0].Percent != "20" {
		t.Fatalf("retried discount: %+v %+v", sub.Subscription, sub.Current)
	}
	subMust(t, a, 200, "POST", "/v1/subscriptions/sub-u/change", `{"event_id":"ev-up","plan":"pro"}`, &sub)
	if sub.Version != 3 || phaseLine(sub.Current) != "pro v1 2026-02-03T01:00:00Z..open -loyal" {
		t.Fatalf("change: %+v", sub)
	}
	t.Run("retried change", func(t *testing.T) {
		st, resp := subAPI(t, a, "POST", "/v1/subscriptions/sub-u/change", `{"event_id":"ev-up","plan":"pro"}`)
		if st == 409 {
			t.Fatal("subscription/commands.go Processor.Change runs the same-plan check (\"already on plan\") before submit looks up cmd.EventID, " +
				"so retrying a change command with the same event_id answers 409 instead of the first result: " + resp)
		}
		var again httpapi.SubscriptionResponse
		if err := json.Unmarshal([]byte(resp), &again); st != 200 || err != nil || again.Version != 3 || again.LastEventID != "ev-up" {
			t.Fatalf("retried change: %d %s", st, resp)
		}
	})
	// A retried create without an id (a generated one): the first result.
	var s1, s2 httpapi.SubscriptionResponse
	subMust(t, a, 201, "POST", "/v1/subscriptions", `{"event_id":"ev-create","customer":"c-utc","plan":"pro"}`, &s1)
	subMust(t, a, 201, "POST", "/v1/subscriptions", `{"event_id":"ev-create","customer":"c-utc","plan":"pro"}`, &s2)
	if s1.ID == "" || s2.ID != s1.ID || s2.Version != s1.Version || s1.Version != 4 {
		t.Fatalf("retried create: %s v%d then %s v%d", s1.ID, s1.Version, s2.ID, s2.Version)
	}
	var evs struct {
		Events []httpapi.SubscriptionEventView
	}
	subMust(t, a, 200, "GET", "/v1/subscription-events?customer=c-utc", nil, &evs)
	gotEvents = nil
	for _, e := range evs.Events {
		gotEvents = append(gotEvents, fmt.Sprintf("v%d %s %s %s dup=%d", e.Version, e.Type, e.SubscriptionID, e.Status, e.Duplicates))
	}
	sameSubLines(t, "c-utc events", gotEvents, []string{
		"v1 start sub-u applied dup=0",
		"v2 discount sub-u applied dup=0",
		"v3 change sub-u applied dup=0",
		"v4 start " + s1.ID + " applied dup=0",
	})
	t.Run("retried create with an explicit id", func(t *testing.T) {
		body := `{"id":"sub-r","event_id":"ev-create-r","customer":"c-utc","plan":"pro"}`
		subMust(t, a, 201, "POST", "/v1/subscriptions", body, &s1)
		st, resp := subAPI(t, a, "POST", "/v1/subscriptions", body)
		if st == 409 {
			t.Fatal("subscription/commands.go Processor.Create checks FindSubscription(cmd.ID) before submit looks up cmd.EventID, " +
				"so retrying a create command with the same id and event_id answers 409 \"subscription sub-r exists\" instead of the first result: " + resp)
		}
		if st != 201 || !strings.Contains(resp, `"id":"sub-r"`) {
			t.Fatalf("retried create: %d %s", st, resp)
		}
	})
}

// TestSubscriptionTrial: a plan with a trial in a zone that changes to
// summer time during the trial; the trial is the period in progress for
// period_end changes and cancels.
func TestSubscriptionTrial(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { testSubscriptionTrial(t, store) })
	}
}

func testSubscriptionTrial(t *testing.T, store string) {
	clock := newSubTestClock(subTime("2026-03-20T12:00:00Z"))
	a := startSubs(t, store, clock, 0)
	subMust(t, a, 201, "POST", "/v1/customers", `{"id":"c-t","time_zone":"Europe/Berlin"}`, nil)
	subMust(t, a, 201, "POST", "/v1/plans", `{"key":"team","currency":"EUR","interval":"month","trial_days":14,"charges":[{"key":"base","type":"recurring","amount":"20"}]}`, nil)
	subMust(t, a, 201, "POST", "/v1/plans", `{"key":"lite","currency":"EUR","interval":"month","charges":[{"key":"base","type":"recurring","amount":"5","timing":"arrears"}]}`, nil)

	var sub httpapi.SubscriptionResponse
	subMust(t, a, 201, "POST", "/v1/subscriptions", `{"id":"st","customer":"c-t","plan":"team"}`, &sub)
	// Mar 20 13:00 CET + 14 days = Apr 3 13:00 CEST; billing is anchored
	// on Apr 1 00:00 CEST.
	if sub.Status != "trialing" || sub.TrialEndsAt == nil || !sub.TrialEndsAt.Equal(subTime("2026-04-03T11:00:00Z")) || !sub.AnchorAt.Equal(subTime("2026-03-31T22:00:00Z")) {
		t.Fatalf("trial subscription = %+v", sub.Subscription)
	}
	sameSubLines(t, "trial phases", phaseLines(sub.Phases), []string{
		"team v1 2026-03-20T12:00:00Z..2026-04-03T11:00:00Z trial",
		"team v1 2026-04-03T11:00:00Z..open",
	})
	cr := subCharges(t, a, "st", "")
	sameSubLines(t, "trial charges", chargeLines(cr.Charges), []string{
		"base team v1 EUR 20 advance 2026-03-20T12:00:00Z..2026-04-03T11:00:00Z trial",
		"base team v1 EUR 20 advance 2026-04-03T11:00:00Z..open",
	})
	sameSubLines(t, "trial prorations", prorationLines(cr.Prorations), []string{
		"base team v1 2026-04-03T11:00:00Z..2026-04-30T22:00:00Z 28/30 18.67 of 20 EUR",
	})

	// A downgrade during the trial takes effect at the trial's end.
	clock.Set(subTime("2026-03-25T08:00:00Z"))
	subMust(t, a, 200, "POST", "/v1/subscriptions/st/change", `{"plan":"lite"}`, &sub)
	sameSubLines(t, "phases after the downgrade", phaseLines(sub.Phases), []string{
		"team v1 2026-03-20T12:00:00Z..2026-04-03T11:00:00Z trial",
		"lite v1 2026-04-03T11:00:00Z..open",
	})
	sameSubLines(t, "charges after the downgrade", chargeLines(subCharges(t, a, "st", "at=2026-04-03T11:00:00Z").Charges), []string{
		"base lite v1 EUR 5 arrears 2026-04-03T11:00:00Z..open",
	})
	// So does a cancel at the period end.
	subMust(t, a, 200, "POST", "/v1/subscriptions/st/cancel", `{"timing":"period_end"}`, &sub)
	if sub.EndsAt == nil || !sub.EndsAt.Equal(subTime("2026-04-03T11:00:00Z")) || sub.Status != "trialing" {
		t.Fatalf("canceled at the trial's end: %+v", sub.Subscription)
	}
	sameSubLines(t, "phases after cancel", phaseLines(sub.Phases), []string{"team v1 2026-03-20T12:00:00Z..2026-04-03T11:00:00Z trial"})
	cr = subCharges(t, a, "st", "")
	sameSubLines(t, "charges after cancel", chargeLines(cr.Charges), []string{"base team v1 EUR 20 advance 2026-03-20T12:00:00Z..2026-04-03T11:00:00Z trial"})
	sameSubLines(t, "prorations after cancel", prorationLines(cr.Prorations), nil)
	clock.Set(subTime("2026-04-03T11:00:00Z"))
	subMust(t, a, 200, "GET", "/v1/subscriptions/st", nil, &sub)
	if sub.Status != "canceled" || sub.Current != nil {
		t.Fatalf("after the trial: %s %s", sub.Status, phaseLine(sub.Current))
	}
}

// TestSubscriptionValidation checks the 4xx answers of the plan and
// subscription API: every problem names its field (a plan's by JSON path),
// and commands that contradict the history are conflicts with a reason.
func TestSubscriptionValidation(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { testSubscriptionValidation(t, store) })
	}
}

func testSubscriptionValidation(t *testing.T, store string) {
	clock := newSubTestClock(subTime("2026-03-10T08:00:00Z"))
	a := startSubs(t, store, clock, 0)
	subMust(t, a, 201, "POST", "/v1/meters", meterCalls, nil)
	subMust(t, a, 201, "POST", "/v1/customers", `{"id":"c-1","time_zone":"America/New_York"}`, nil)
	subMust(t, a, 201, "POST", "/v1/plans", planBasic1, nil)
	subMust(t, a, 201, "POST", "/v1/plans", planPro, nil)
	subMust(t, a, 201, "POST", "/v1/plans", planUSD, nil)
	subMust(t, a, 201, "POST", "/v1/plans", planAnnual, nil)

	// Plans.
	subFails(t, a, 400, "POST", "/v1/plans", `{"key":"t","currency":"EUR","interval":"month","charges":[
		{"key":"calls","type":"usage","meter":"calls","price":{"version":1,"currency":"EUR","model":"graduated","tiers":[
			{"up_to":1000,"unit_price":"0.1"},{"up_to":500,"unit_price":"0.05"},{"unit_price":"0.01"}]}}]}`,
		"charges[0].price.tiers[1].up_to: must be greater than tiers[0].up_to (1000)")
	subFails(t, a, 400, "POST", "/v1/plans", `{"key":"t","currency":"EUR","interval":"month","charges":[
		{"key":"base","type":"recurring","amount":"1"},
		{"key":"calls","type":"usage","meter":"calls","price":{"version":1,"currency":"USD","model":"per_unit","unit_price":"0.1"}}]}`,
		"charges[1].price.currency: is USD; a plan's prices must be in the plan's currency EUR")
	subFails(t, a, 400, "POST", "/v1/plans", `{"key":"t","currency":"EUR","interval":"month","charges":[
		{"key":"base","type":"recurring","amount":"1"},
		{"key":"tokens","type":"usage","meter":"tokens","price":{"version":1,"currency":"EUR","model":"per_unit","unit_price":"0.1"}}]}`,
		`charges[1].meter: meter "tokens" does not exist`)
	subFails(t, a, 400, "POST", "/v1/plans", `{"key":"t","currency":"EUR","interval":"month","charges":[{"key":"base","type":"recurring","amount":"1"}],"intreval":"week"}`,
		`body: unknown field "intreval"`)
	subFails(t, a, 400, "POST", "/v1/plans", `{"key":"t","version":3,"currency":"EUR","interval":"month","charges":[{"key":"base","type":"recurring","amount":"1"}]}`,
		"version: is assigned by Abacus")
	subFails(t, a, 400, "POST", "/v1/plans", `{"key":"bad key","currency":"EURO","interval":"daily","interval_count":101,"trial_days":-1,"charges":[]}`,
		"key: must be 1-128 characters", "currency: ", `interval: must be week, month, quarter or year, got "daily"`,
		"interval_count: must be 1-100, got 101", "trial_days: must be 0-730, got -1", "charges: a plan needs at least one charge")
	subFails(t, a, 400, "POST", "/v1/plans", `{"key":"t","currency":"EUR","interval":"month","charges":[
		{"key":"base","type":"recurring","amount":"-1","timing":"later"},
		{"key":"base","type":"recurring","amount":"1","meter":"calls"},
		{"key":"u","type":"usage","amount":"1"},
		{"key":"f","type":"usage","meter":"calls","price":{"version":1,"currency":"EUR","model":"flat","amount":"5"}},
		{"key":"x","type":"one_off"}]}`,
		"charges[0].amount: must not be negative, got -1", `charges[0].timing: must be advance or arrears, got "later"`,
		`charges[1].key: "base" is used by another charge of the plan`, "charges[1]: a recurring charge has an amount, not a meter or price",
		"charges[2].meter: is required for a usage charge", "charges[2]: a usage charge has a meter and price, not an amount or timing",
		"charges[2].price: is required for a usage charge",
		"charges[3].price.model: flat is a recurring fee: use a recurring charge with an amount",
		`charges[4].type: must be recurring or usage, got "one_off"`)
	subFails(t, a, 404, "GET", "/v1/plans/nope", nil, "nope")
	subFails(t, a, 404, "GET", "/v1/plans/basic?version=7", nil, `plan "basic" version 7 not found`)
	subFails(t, a, 400, "GET", "/v1/plans/basic?version=0", nil, `version: must be a positive integer, got "0"`)
	subFails(t, a, 404, "GET", "/v1/plans/nope/versions", nil, "plan nope not found")
	var plans struct{ Plans []abacus.Plan }
	subMust(t, a, 200, "GET", "/v1/plans", nil, &plans)
	if len(plans.Plans) != 4 {
		t.Fatalf("%d plans after the invalid ones", len(plans.Plans))
	}

	// Creating subscriptions.
	subFails(t, a, 400, "POST", "/v1/subscriptions", `{"customer":"c-1","plan":"gold"}`, `plan: "gold" does not exist`)
	subFails(t, a, 400, "POST", "/v1/subscriptions", `{"customer":"c-1","plan":"basic","plan_version":5}`, `plan: "basic" does not exist`)
	subFails(t, a, 400, "POST", "/v1/subscriptions", `{"customer":"c-ghost","plan":"basic"}`, `customer: "c-ghost" does not exist`)
	subFails(t, a, 400, "POST", "/v1/subscriptions", `{"customer":"c-1","plan":"basic","billing_anchor":"monthly"}`,
		`billing_anchor: must be calendar or anniversary, got "monthly"`)
	subFails(t, a, 400, "POST", "/v1/subscriptions", `{"customer":"","plan":"","id":"bad id"}`,
		"customer: is required", "plan: is required", "id: must be 1-128 characters")
	subFails(t, a, 400, "POST", "/v1/subscriptions", `{"customer":"c-1","plan":"basic","plna":"pro"}`, `body: unknown field "plna"`)
	subFails(t, a, 400, "POST", "/v1/subscriptions", `{"customer":"c-1","plan":"basic","start_at":"tomorrow"}`, "body: ")
	subFails(t, a, 400, "POST", "/v1/subscriptions", `{"customer":`, "body: ")

	var sub httpapi.SubscriptionResponse
	subMust(t, a, 201, "POST", "/v1/subscriptions", `{"id":"s-1","customer":"c-1","plan":"basic"}`, &sub)
	// March 1 00:00 in New York (EST, UTC-5).
	if !sub.AnchorAt.Equal(subTime("2026-03-01T05:00:00Z")) {
		t.Fatalf("anchor %s", subStamp(sub.AnchorAt))
	}
	subFails(t, a, 409, "POST", "/v1/subscriptions", `{"id":"s-1","customer":"c-1","plan":"pro"}`, "subscription s-1 exists")

	// Commands on it.
	subFails(t, a, 404, "POST", "/v1/subscriptions/s-404/change", `{"plan":"pro"}`, "subscription s-404 not found")
	subFails(t, a, 404, "POST", "/v1/subscriptions/s-404/cancel", "", "subscription s-404 not found")
	subFails(t, a, 404, "POST", "/v1/subscriptions/s-404/discounts", `{"discount":{"key":"d","percent":"5"}}`, "subscription s-404 not found")
	subFails(t, a, 404, "DELETE", "/v1/subscriptions/s-404/discounts/d", nil, "subscription s-404 not found")
	subFails(t, a, 404, "GET", "/v1/subscriptions/s-404", nil, "s-404")
	subFails(t, a, 404, "GET", "/v1/subscriptions/s-404/charges", nil, "s-404")
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/change", `{"plan":""}`, "plan: is required")
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/change", `{"plan":"gold"}`, `plan: "gold" does not exist`)
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/change", `{"plan":"pro","timing":"tomorrow"}`, `timing: must be now or period_end, got "tomorrow"`)
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/cancel", `{"timing":"eventually"}`, `timing: must be now or period_end, got "eventually"`)
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/change", `{"plan":"pro","when":"now"}`, `body: unknown field "when"`)
	subFails(t, a, 409, "POST", "/v1/subscriptions/s-1/change", `{"plan":"basic"}`, "subscription s-1 is already on plan basic v1 at 2026-03-10T08:00:00Z")
	subFails(t, a, 409, "POST", "/v1/subscriptions/s-1/change", `{"plan":"usd"}`,
		"plan usd v1 is in USD; the subscription bills in EUR (start a new subscription to change currency)")
	subFails(t, a, 409, "POST", "/v1/subscriptions/s-1/change", `{"plan":"annual"}`,
		"plan annual v1 bills every 1 year; the subscription bills every 1 month")
	subFails(t, a, 409, "POST", "/v1/subscriptions/s-1/change", `{"plan":"pro","effective_at":"2026-03-01T00:00:00Z"}`,
		"effective_at 2026-03-01T00:00:00Z is before the subscription's start 2026-03-10T08:00:00Z")
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/discounts", `{"discount":{"key":"d","percent":"150"}}`,
		"discount.percent: must be more than 0 and at most 100, got 150")
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/discounts", `{"discount":{"key":"d","percent":"5","amount":"1"}}`,
		"discount: exactly one of percent and amount")
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/discounts", `{"discount":{"key":"","amount":"0","items":[""]}}`,
		"discount.key: must be", "discount.amount: must be more than 0", "discount.items[0]: must name a plan charge key")
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/discounts", `{"discount":{"key":"d","percent":"5","until":"2026-03-10T08:00:00Z"}}`,
		"discount.until: 2026-03-10T08:00:00Z is not after the effective time 2026-03-10T08:00:00Z")
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/discounts", `{"discount":{"key":"d","percent":"5","until":"9999-12-31T00:00:00Z"}}`,
		"discount.until: 9999-12-31T00:00:00Z is out of range: subscription times are from 1900-01-01 until 2200-01-01")
	subFails(t, a, 400, "DELETE", "/v1/subscriptions/s-1/discounts/bad%20key", nil, "key: must name a discount")
	subFails(t, a, 400, "POST", "/v1/subscriptions/s-1/cancel", `{"timing":"later","effective_at":"2026-03-10T08:00:00Z"}`, `timing: must be now or period_end, got "later"`)
	subFails(t, a, 400, "DELETE", "/v1/subscriptions/s-1/discounts/d?effective_at=soon", nil, `effective_at: must be an RFC 3339 time`)
	subFails(t, a, 400, "GET", "/v1/subscriptions/s-1/charges?at=yesterday", nil, `at: must be an RFC 3339 time such as 2026-01-31T00:00:00Z, got "yesterday"`)
	subFails(t, a, 400, "GET", "/v1/subscriptions/s-1/charges?as_of=2026-13-01T00:00:00Z", nil, "as_of: must be an RFC 3339 time")
	subFails(t, a, 400, "GET", "/v1/subscription-events", nil, "give at least one of customer, subscription and status")
	subFails(t, a, 400, "GET", "/v1/subscription-events?status=pending", nil, `status: must be held, applied or rejected, got "pending"`)
	subFails(t, a, 404, "GET", "/v1/subscription-events/nope", nil, "nope")

	// None of the refused commands left a trace.
	subMust(t, a, 200, "GET", "/v1/subscriptions/s-1", nil, &sub)
	if sub.Version != 1 || len(sub.Events) != 1 || len(sub.Phases) != 1 {
		t.Fatalf("after refused commands: version %d, %d events, %d phases", sub.Version, len(sub.Events), len(sub.Phases))
	}

	// Cancel now, then nothing may follow.
	clock.Add(time.Hour)
	subMust(t, a, 200, "POST", "/v1/subscriptions/s-1/cancel", "", &sub)
	if sub.EndsAt == nil || !sub.EndsAt.Equal(subTime("2026-03-10T09:00:00Z")) || sub.Status != "canceled" || sub.Current != nil {
		t.Fatalf("canceled now: %+v %s %s", sub.Subscription, phaseLines(sub.Phases), phaseLine(sub.Current))
	}
	subFails(t, a, 409, "POST", "/v1/subscriptions/s-1/cancel", "", "the subscription ends at 2026-03-10T09:00:00Z")
	subFails(t, a, 409, "POST", "/v1/subscriptions/s-1/change", `{"plan":"pro"}`, "the subscription ends at 2026-03-10T09:00:00Z")

	// Scopes: only admin keys change plans and subscriptions.
	var ingestKey, readKey httpapi.APIKeyResponse
	subMust(t, a, 201, "POST", "/v1/api-keys", `{"name":"producer","scopes":["ingest"]}`, &ingestKey)
	subMust(t, a, 201, "POST", "/v1/api-keys", `{"name":"viewer","scopes":["read"]}`, &readKey)
	for _, c := range []struct {
		key, method, path, body string
	}{
		{ingestKey.Secret, "POST", "/v1/plans", planPro},
		{readKey.Secret, "POST", "/v1/plans", planPro},
		{ingestKey.Secret, "GET", "/v1/plans", ""},
		{readKey.Secret, "POST", "/v1/subscriptions", `{"customer":"c-1","plan":"pro"}`},
		{ingestKey.Secret, "POST", "/v1/subscriptions/s-1/change", `{"plan":"pro"}`},
		{readKey.Secret, "POST", "/v1/subscriptions/s-1/discounts", `{"discount":{"key":"d","percent":"5"}}`},
		{readKey.Secret, "DELETE", "/v1/subscriptions/s-1/discounts/d", ""},
		{ingestKey.Secret, "POST", "/v1/subscription-events", `{"id":"x"}`},
		{ingestKey.Secret, "GET", "/v1/subscriptions/s-1", ""},
		{ingestKey.Secret, "GET", "/v1/alerts", ""},
	} {
		st, resp := subAPIKey(t, a, c.key, c.method, c.path, c.body)
		subFailsWith(t, c.method+" "+c.path, st, resp, 403, "scope")
	}
	st, resp := subAPIKey(t, a, "", "GET", "/v1/plans", nil)
	subFailsWith(t, "GET /v1/plans without a key", st, resp, 401)
	st, resp = subAPIKey(t, a, readKey.Secret, "GET", "/v1/subscriptions/s-1/charges", nil)
	if st != 200 {
		t.Fatalf("read key: GET charges %d %s", st, resp)
	}
	subMust(t, a, 200, "GET", "/v1/plans/pro/versions", nil, nil)
	var versions struct{ Versions []abacus.Plan }
	subMust(t, a, 200, "GET", "/v1/plans/pro/versions", nil, &versions)
	if len(versions.Versions) != 1 {
		t.Fatalf("pro has %d versions after refused publications", len(versions.Versions))
	}

	// Another tenant sees none of this.
	key, err := app.CreateTenant(context.Background(), a.Store, "other", "Other")
	if err != nil {
		t.Fatal(err)
	}
	st, resp = subAPIKey(t, a, key, "GET", "/v1/subscriptions/s-1", nil)
	subFailsWith(t, "other tenant", st, resp, 404)
	st, resp = subAPIKey(t, a, key, "GET", "/v1/plans/basic", nil)
	subFailsWith(t, "other tenant", st, resp, 404)
	st, resp = subAPIKey(t, a, key, "POST", "/v1/subscriptions", `{"customer":"c-1","plan":"basic"}`)
	subFailsWith(t, "other tenant", st, resp, 400, `customer: "c-1" does not exist`)
}

// TestSubscriptionExternalEvents covers POST /v1/subscription-events: a
// mixed batch (each invalid event rejected alone with its index, id, field
// and reason), events out of order (held until their predecessor comes),
// duplicates (discarded and counted), conflicts in turn, and a gap left
// open past --subscription-gap-alert (overdue, alerted, on /metrics) until
// it is filled.
func TestSubscriptionExternalEvents(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { testSubscriptionExternalEvents(t, store) })
	}
}

type extEvent struct {
	ID            string           `json:"id,omitempty"`
	Customer      string           `json:"customer,omitempty"`
	Subscription  string           `json:"subscription,omitempty"`
	Type          string           `json:"type,omitempty"`
	EffectiveAt   string           `json:"effective_at,omitempty"`
	Version       int64            `json:"version,omitempty"`
	PreviousID    string           `json:"previous_id,omitempty"`
	Plan          string           `json:"plan,omitempty"`
	PlanVersion   int              `json:"plan_version,omitempty"`
	BillingAnchor string           `json:"billing_anchor,omitempty"`
	Discount      *abacus.Discount `json:"discount,omitempty"`
	DiscountKey   string           `json:"discount_key,omitempty"`
}

func statusLines(ss []subscription.EventStatus) []string {
	out := []string{}
	for _, s := range ss {
		l := fmt.Sprintf("%s %s v%d", s.ID, s.Status, s.Version)
		if s.Reason != "" {
			l += " " + s.Reason
		}
		out = append(out, l)
	}
	return out
}

func subPostExternal(t *testing.T, a *app.App, wantStatus int, body any) subscription.AcceptResult {
	t.Helper()
	var res subscription.AcceptResult
	subMust(t, a, wantStatus, "POST", "/v1/subscription-events?wait=true", body, &res)
	return res
}

func subEventView(t *testing.T, a *app.App, id string) httpapi.SubscriptionEventView {
	t.Helper()
	var v httpapi.SubscriptionEventView
	subMust(t, a, 200, "GET", "/v1/subscription-events/"+id, nil, &v)
	return v
}

func subMetric(t *testing.T, a *app.App, name string) string {
	t.Helper()
	resp, err := http.Get(a.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func subOpenAlerts(t *testing.T, a *app.App) []abacus.Alert {
	t.Helper()
	var res struct{ Alerts []abacus.Alert }
	subMust(t, a, 200, "GET", "/v1/alerts?open=true", nil, &res)
	return res.Alerts
}

func subWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testSubscriptionExternalEvents(t *testing.T, store string) {
	clock := newSubTestClock(subTime("2026-04-01T12:00:00Z"))
	a := startSubs(t, store, clock, 200*time.Millisecond)
	subMust(t, a, 201, "POST", "/v1/meters", meterCalls, nil)
	for _, c := range []string{"c-ext-1", "c-ext-2", "c-ext-3", "c-ext-4"} {
		subMust(t, a, 201, "POST", "/v1/customers", `{"id":"`+c+`","time_zone":"Europe/Berlin"}`, nil)
	}
	subMust(t, a, 201, "POST", "/v1/plans", planBasic1, nil)
	subMust(t, a, 201, "POST", "/v1/plans", planPro, nil)
	subMust(t, a, 201, "POST", "/v1/plans", planUSD, nil)
	subMust(t, a, 201, "POST", "/v1/plans", planBasic2, nil)

	// A mixed batch: the valid events are accepted and applied, each
	// invalid one is rejected alone.
	batch := []any{
		extEvent{ID: "x1-1", Customer: "c-ext-1", Subscription: "sx-1", Type: "start", EffectiveAt: "2026-03-01T00:00:00+01:00", Version: 1, Plan: "basic", PlanVersion: 1},
		extEvent{Customer: "c-ext-1", Subscription: "sx-1", Type: "cancel", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2},
		extEvent{ID: "bad-type", Customer: "c-ext-1", Subscription: "sx-1", Type: "pause", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2},
		json.RawMessage(`{"id":"bad-field","custmer":"c-ext-1"}`),
		extEvent{ID: "bad-plan", Customer: "c-ext-1", Subscription: "sx-1", Type: "change", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2, Plan: "gold"},
		extEvent{ID: "bad-customer", Customer: "c-ghost", Subscription: "sx-g", Type: "start", EffectiveAt: "2026-05-01T00:00:00Z", Version: 1, Plan: "basic"},
		extEvent{ID: "bad-order", Customer: "c-ext-1", Subscription: "sx-1", Type: "cancel", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2, PreviousID: "x1-1"},
		extEvent{ID: "bad-time", Customer: "c-ext-1", Subscription: "sx-1", Type: "cancel", Version: 2},
		extEvent{ID: "x1-2", Customer: "c-ext-1", Subscription: "sx-1", Type: "discount", EffectiveAt: "2026-03-15T00:00:00+01:00", PreviousID: "x1-1",
			Discount: &abacus.Discount{Key: "crm", Amount: "2.50"}},
		extEvent{ID: "x1-1", Customer: "c-ext-1", Subscription: "sx-1", Type: "start", EffectiveAt: "2026-03-01T00:00:00+01:00", Version: 1, Plan: "basic", PlanVersion: 1},
		extEvent{ID: "bad-version", Customer: "c-ext-1", Subscription: "sx-1", Type: "cancel", EffectiveAt: "2026-05-01T00:00:00Z", Version: -1},
		extEvent{ID: "no-order", Customer: "c-ext-1", Subscription: "sx-1", Type: "cancel", EffectiveAt: "2026-05-01T00:00:00Z"},
		extEvent{ID: "no-discount", Customer: "c-ext-1", Subscription: "sx-1", Type: "discount", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2},
		extEvent{ID: "zero-discount", Customer: "c-ext-1", Subscription: "sx-1", Type: "discount", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2,
			Discount: &abacus.Discount{Key: "z", Percent: "0"}},
		extEvent{ID: "cancel-plan", Customer: "c-ext-1", Subscription: "sx-1", Type: "cancel", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2, Plan: "pro"},
		extEvent{ID: "bad-anchor", Customer: "c-ext-1", Subscription: "sx-9", Type: "start", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2, Plan: "pro", BillingAnchor: "weekly"},
		extEvent{ID: "no-plan", Customer: "c-ext-1", Subscription: "sx-9", Type: "start", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2},
		extEvent{ID: "bad-sub", Customer: "c-ext-1", Subscription: "sx 1", Type: "cancel", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2},
		extEvent{ID: "no-key", Customer: "c-ext-1", Subscription: "sx-1", Type: "remove_discount", EffectiveAt: "2026-05-01T00:00:00Z", Version: 2},
		json.RawMessage(`{"id":"bad-version-type","customer":"c-ext-1","subscription":"sx-1","type":"cancel","effective_at":"2026-05-01T00:00:00Z","version":"2"}`),
	}
	res := subPostExternal(t, a, 202, batch)
	if res.Accepted != 2 {
		t.Fatalf("accepted %d: %+v", res.Accepted, res)
	}
	var rejected []string
	for _, r := range res.Rejected {
		rejected = append(rejected, fmt.Sprintf("%d %s %s: %s", r.Index, r.ID, r.Field, r.Reason))
	}
	sameSubLines(t, "rejected", rejected, []string{
		"1  id: is required",
		`2 bad-type type: must be start, change, cancel, discount or remove_discount, got "pause"`,
		"3 bad-field custmer: unknown field",
		`4 bad-plan plan: plan "gold" version 0 does not exist (0 = latest)`,
		`5 bad-customer customer: customer "c-ghost" does not exist; create it before its subscription starts`,
		"6 bad-order previous_id: give version or previous_id, not both",
		"7 bad-time effective_at: is required (RFC 3339)",
		"9 x1-1 id: appears earlier in this request",
		"10 bad-version version: must be positive",
		"11 no-order version: version or previous_id is required (the first event of a customer has version 1)",
		"12 no-discount discount: is required for a discount event",
		"13 zero-discount discount.percent: must be more than 0 and at most 100, got 0",
		"14 cancel-plan plan: only start and change events name a plan",
		`15 bad-anchor billing_anchor: must be calendar or anniversary, got "weekly"`,
		"16 no-plan plan: is required for a start event",
		"17 bad-sub subscription: is required: 1-128 characters of letters, digits, '_', '.', ':' or '-'",
		"18 no-key discount_key: is required for a remove_discount event: 1-128 characters of letters, digits, '_', '.', ':' or '-'",
		"19 bad-version-type version: must be a JSON int64, got string",
	})
	sameSubLines(t, "statuses", statusLines(res.Statuses), []string{"x1-1 applied v1", "x1-2 applied v2"})
	var sub httpapi.SubscriptionResponse
	subMust(t, a, 200, "GET", "/v1/subscriptions/sx-1", nil, &sub)
	sameSubLines(t, "sx-1 phases", phaseLines(sub.Phases), []string{
		"basic v1 2026-02-28T23:00:00Z..2026-03-14T23:00:00Z",
		"basic v1 2026-03-14T23:00:00Z..open -crm",
	})
	if sub.Version != 2 || sub.TimeZone != "Europe/Berlin" || !sub.AnchorAt.Equal(subTime("2026-02-28T23:00:00Z")) || len(sub.Events) != 2 || sub.Events[0].Source != "external" {
		t.Fatalf("sx-1 = %+v", sub.Subscription)
	}
	// An invalid event in a malformed time is rejected alone too.
	res = subPostExternal(t, a, 400, `[{"id":"bad-stamp","customer":"c-ext-1","subscription":"sx-1","type":"cancel","effective_at":"May 1st","version":3}]`)
	if res.Accepted != 0 || len(res.Rejected) != 1 || res.Rejected[0].Index != 0 || res.Rejected[0].ID != "" && res.Rejected[0].ID != "bad-stamp" {
		t.Fatalf("malformed time: %+v", res)
	}
	t.Run("a malformed effective_at names its field", func(t *testing.T) {
		if r := res.Rejected[0]; r.Field != "effective_at" {
			t.Fatal(fmt.Sprintf("subscription/external.go decodeExternal: a malformed time (a *time.ParseError, not a *json.UnmarshalTypeError) "+
				"is rejected with field %q and id %q (reason %q): the producer is not told which field is wrong", r.Field, r.ID, r.Reason))
		}
	})
	// Nothing valid: 400 with the same body.
	res = subPostExternal(t, a, 400, []any{extEvent{ID: "lone", Type: "start"}})
	if res.Accepted != 0 || len(res.Rejected) != 1 || res.Rejected[0].Field != "customer" {
		t.Fatalf("nothing valid: %+v", res)
	}
	subFails(t, a, 400, "POST", "/v1/subscription-events", `"not events"`, "body: want a JSON object or an array of objects")

	// Events that cannot apply in their turn are rejected with a reason and
	// still take their version; a taken version is rejected.
	res = subPostExternal(t, a, 202, []any{
		extEvent{ID: "x1-3", Customer: "c-ext-1", Subscription: "sx-1", Type: "change", EffectiveAt: "2026-04-01T00:00:00Z", Version: 3, Plan: "usd"},
		extEvent{ID: "x1-4", Customer: "c-ext-1", Subscription: "sx-1", Type: "change", EffectiveAt: "2026-04-01T00:00:00Z", Version: 4, Plan: "pro"},
		extEvent{ID: "x1-2b", Customer: "c-ext-1", Subscription: "sx-1", Type: "cancel", EffectiveAt: "2026-04-01T00:00:00Z", Version: 2},
	})
	sameSubLines(t, "in-turn statuses", statusLines(res.Statuses), []string{
		"x1-3 rejected v3 plan usd v1 is in USD; the subscription bills in EUR (start a new subscription to change currency)",
		"x1-4 applied v4",
		"x1-2b rejected v2 version 2 is taken: customer c-ext-1's events are applied up to version 4 (event x1-4)",
	})
	// A single object (not an array) is one event; the plan's latest
	// version is resolved on acceptance.
	res = subPostExternal(t, a, 202, extEvent{ID: "x1-5", Customer: "c-ext-1", Subscription: "sx-1", Type: "change", EffectiveAt: "2026-05-01T00:00:00Z", PreviousID: "x1-4", Plan: "basic"})
	sameSubLines(t, "single event", statusLines(res.Statuses), []string{"x1-5 applied v5"})
	if e := subEventView(t, a, "x1-5"); *e.Plan != (abacus.PlanRef{Key: "basic", Version: 2}) || e.PreviousID != "x1-4" || e.Version != 5 {
		t.Fatalf("x1-5 = %+v", e.SubscriptionEventRecord)
	}

	// Out of order: version 3 before 2 is held; 2 applies both.
	res = subPostExternal(t, a, 202, []any{
		extEvent{ID: "x2-1", Customer: "c-ext-2", Subscription: "sx-2", Type: "start", EffectiveAt: "2026-01-01T00:00:00+01:00", Version: 1, Plan: "basic", PlanVersion: 1},
	})
	sameSubLines(t, "x2-1", statusLines(res.Statuses), []string{"x2-1 applied v1"})
	res = subPostExternal(t, a, 202, []any{
		extEvent{ID: "x2-3", Customer: "c-ext-2", Subscription: "sx-2", Type: "cancel", EffectiveAt: "2026-03-01T00:00:00+01:00", Version: 3},
	})
	sameSubLines(t, "x2-3 early", statusLines(res.Statuses), []string{"x2-3 held v3"})
	if e := subEventView(t, a, "x2-3"); e.Status != abacus.SubEventHeld || e.GapOverdue || e.AppliedAt != nil || !e.ReceivedAt.Equal(subTime("2026-04-01T12:00:00Z")) {
		t.Fatalf("held x2-3 = %+v overdue %v", e.SubscriptionEventRecord, e.GapOverdue)
	}
	subMust(t, a, 200, "GET", "/v1/subscriptions/sx-2", nil, &sub)
	if sub.Version != 1 || sub.EndsAt != nil || len(sub.Held) != 1 || sub.Held[0].ID != "x2-3" || len(sub.Events) != 1 {
		t.Fatalf("sx-2 with a held event: %+v held %d events %d", sub.Subscription, len(sub.Held), len(sub.Events))
	}
	var evs struct {
		Events []httpapi.SubscriptionEventView
	}
	subMust(t, a, 200, "GET", "/v1/subscription-events?status=held", nil, &evs)
	if len(evs.Events) != 1 || evs.Events[0].ID != "x2-3" {
		t.Fatalf("held events: %+v", evs.Events)
	}
	sameSubLines(t, "sx-2 charges while held", chargeLines(subCharges(t, a, "sx-2", "").Charges), []string{
		"base basic v1 EUR 10 advance 2025-12-31T23:00:00Z..open",
		"calls basic v1 EUR calls@0.01 2025-12-31T23:00:00Z..open",
	})
	res = subPostExternal(t, a, 202, []any{
		extEvent{ID: "x2-2", Customer: "c-ext-2", Subscription: "sx-2", Type: "change", EffectiveAt: "2026-02-01T00:00:00+01:00", Version: 2, Plan: "pro"},
	})
	sameSubLines(t, "x2-2", statusLines(res.Statuses), []string{"x2-2 applied v2"})
	if e := subEventView(t, a, "x2-3"); e.Status != abacus.SubEventApplied || e.Version != 3 || e.AppliedAt == nil {
		t.Fatalf("x2-3 after x2-2 = %+v", e.SubscriptionEventRecord)
	}
	subMust(t, a, 200, "GET", "/v1/subscriptions/sx-2", nil, &sub)
	sameSubLines(t, "sx-2 phases", phaseLines(sub.Phases), []string{
		"basic v1 2025-12-31T23:00:00Z..2026-01-31T23:00:00Z",
		"pro v1 2026-01-31T23:00:00Z..2026-02-28T23:00:00Z",
	})
	if sub.Version != 3 || sub.LastEventID != "x2-3" || sub.EndsAt == nil || !sub.EndsAt.Equal(subTime("2026-02-28T23:00:00Z")) || len(sub.Held) != 0 || sub.Status != "canceled" {
		t.Fatalf("sx-2 = %+v", sub)
	}
	sameSubLines(t, "sx-2 charges", chargeLines(subCharges(t, a, "sx-2", "").Charges), []string{
		"base basic v1 EUR 10 advance 2025-12-31T23:00:00Z..2026-01-31T23:00:00Z",
		"base pro v1 EUR 30 advance 2026-01-31T23:00:00Z..2026-02-28T23:00:00Z",
		"calls basic v1 EUR calls@0.01 2025-12-31T23:00:00Z..2026-01-31T23:00:00Z",
		"calls pro v1 EUR calls@0.005 2026-01-31T23:00:00Z..2026-02-28T23:00:00Z",
	})

	// Duplicates: discarded, counted, the record unchanged.
	for i := 1; i <= 2; i++ {
		res = subPostExternal(t, a, 202, []any{
			extEvent{ID: "x2-1", Customer: "c-ext-2", Subscription: "sx-2", Type: "start", EffectiveAt: "2026-01-01T00:00:00+01:00", Version: 1, Plan: "basic", PlanVersion: 1},
			extEvent{ID: "x2-3", Customer: "c-ext-2", Subscription: "sx-2", Type: "cancel", EffectiveAt: "2026-06-01T00:00:00Z", Version: 3},
		})
		sameSubLines(t, "duplicates", statusLines(res.Statuses), []string{"x2-1 applied v1", "x2-3 applied v3"})
		if e := subEventView(t, a, "x2-1"); e.Duplicates != int64(i) || e.Status != abacus.SubEventApplied {
			t.Fatalf("x2-1 after %d duplicates: %+v", i, e.SubscriptionEventRecord)
		}
		if e := subEventView(t, a, "x2-3"); e.Duplicates != int64(i) || !e.EffectiveAt.Equal(subTime("2026-02-28T23:00:00Z")) {
			t.Fatalf("x2-3 after %d duplicates: %+v", i, e.SubscriptionEventRecord)
		}
	}
	subMust(t, a, 200, "GET", "/v1/subscription-events?customer=c-ext-2", nil, &evs)
	var lines []string
	for _, e := range evs.Events {
		lines = append(lines, fmt.Sprintf("%s v%d %s dup=%d", e.ID, e.Version, e.Status, e.Duplicates))
	}
	sameSubLines(t, "c-ext-2 events", lines, []string{"x2-1 v1 applied dup=2", "x2-2 v2 applied dup=0", "x2-3 v3 applied dup=2"})

	// Ordered by previous_id and delivered backwards: held with no known
	// version (listed last) until the chain reaches the head.
	res = subPostExternal(t, a, 202, []any{
		extEvent{ID: "y-3", Customer: "c-ext-4", Subscription: "sy", Type: "cancel", EffectiveAt: "2026-06-01T00:00:00Z", PreviousID: "y-2"},
	})
	sameSubLines(t, "y-3", statusLines(res.Statuses), []string{"y-3 held v0"})
	res = subPostExternal(t, a, 202, []any{
		extEvent{ID: "y-2", Customer: "c-ext-4", Subscription: "sy", Type: "change", EffectiveAt: "2026-05-01T00:00:00Z", PreviousID: "y-1", Plan: "pro"},
	})
	sameSubLines(t, "y-2", statusLines(res.Statuses), []string{"y-2 held v0"})
	subMust(t, a, 200, "GET", "/v1/subscription-events?customer=c-ext-4", nil, &evs)
	lines = nil
	for _, e := range evs.Events {
		lines = append(lines, fmt.Sprintf("%s v%d %s prev=%s", e.ID, e.Version, e.Status, e.PreviousID))
	}
	sameSubLines(t, "c-ext-4 held", lines, []string{"y-2 v0 held prev=y-1", "y-3 v0 held prev=y-2"})
	res = subPostExternal(t, a, 202, []any{
		extEvent{ID: "y-1", Customer: "c-ext-4", Subscription: "sy", Type: "start", EffectiveAt: "2026-04-01T00:00:00Z", Version: 1, Plan: "basic"},
	})
	sameSubLines(t, "y-1", statusLines(res.Statuses), []string{"y-1 applied v1"})
	subMust(t, a, 200, "GET", "/v1/subscription-events?customer=c-ext-4", nil, &evs)
	lines = nil
	for _, e := range evs.Events {
		lines = append(lines, fmt.Sprintf("%s v%d %s prev=%s", e.ID, e.Version, e.Status, e.PreviousID))
	}
	sameSubLines(t, "c-ext-4 applied", lines, []string{"y-1 v1 applied prev=", "y-2 v2 applied prev=y-1", "y-3 v3 applied prev=y-2"})
	subMust(t, a, 200, "GET", "/v1/subscriptions/sy", nil, &sub)
	sameSubLines(t, "sy phases", phaseLines(sub.Phases), []string{
		"basic v2 2026-04-01T00:00:00Z..2026-05-01T00:00:00Z",
		"pro v1 2026-05-01T00:00:00Z..2026-06-01T00:00:00Z",
	})
	if len(subOpenAlerts(t, a)) != 0 {
		t.Fatalf("alerts before any gap was overdue: %+v", subOpenAlerts(t, a))
	}

	// A gap left open past the bound (200ms here): overdue, alerted, counted.
	res = subPostExternal(t, a, 202, []any{
		extEvent{ID: "x3-1", Customer: "c-ext-3", Subscription: "sx-3", Type: "start", EffectiveAt: "2026-04-01T00:00:00+02:00", Version: 1, Plan: "pro"},
		extEvent{ID: "x3-3", Customer: "c-ext-3", Subscription: "sx-3", Type: "discount", EffectiveAt: "2026-04-10T00:00:00+02:00", Version: 3,
			Discount: &abacus.Discount{Key: "promo", Percent: "25"}},
	})
	sameSubLines(t, "x3", statusLines(res.Statuses), []string{"x3-1 applied v1", "x3-3 held v3"})
	heldSince := clock.Now()
	clock.Add(time.Minute)
	var alerts []abacus.Alert
	subWaitFor(t, "the gap alert", func() bool { alerts = subOpenAlerts(t, a); return len(alerts) > 0 })
	if len(alerts) != 1 {
		t.Fatalf("open alerts %+v", alerts)
	}
	al := alerts[0]
	if al.ID != "subscription_gap:c-ext-3:2" || al.Kind != abacus.AlertSubscriptionGap || al.Subject != "c-ext-3" || al.ResolvedAt != nil ||
		al.Message != "customer c-ext-3: subscription event x3-3 has waited since "+subStamp(heldSince)+" for version 2, which has not arrived" ||
		!al.RaisedAt.Equal(clock.Now()) {
		t.Fatalf("alert = %+v", al)
	}
	var details struct {
		Customer       string    `json:"customer"`
		MissingVersion int64     `json:"missing_version"`
		AppliedVersion int64     `json:"applied_version"`
		HeldEvent      string    `json:"held_event"`
		HeldSince      time.Time `json:"held_since"`
	}
	if err := json.Unmarshal(al.Details, &details); err != nil || details.Customer != "c-ext-3" || details.MissingVersion != 2 ||
		details.AppliedVersion != 1 || details.HeldEvent != "x3-3" || !details.HeldSince.Equal(heldSince) {
		t.Fatalf("alert details %s: %+v %v", al.Details, details, err)
	}
	if e := subEventView(t, a, "x3-3"); !e.GapOverdue || e.Status != abacus.SubEventHeld {
		t.Fatalf("x3-3 not overdue: %+v", e)
	}
	subMust(t, a, 200, "GET", "/v1/subscriptions/sx-3", nil, &sub)
	if len(sub.Held) != 1 || !sub.Held[0].GapOverdue {
		t.Fatalf("sx-3 held %+v", sub.Held)
	}
	subWaitFor(t, "abacus_subscription_gaps_open 1", func() bool { return subMetric(t, a, "abacus_subscription_gaps_open") == "1" })
	// Fill the gap: both apply, the alert is resolved.
	clock.Add(time.Second)
	res = subPostExternal(t, a, 202, []any{
		extEvent{ID: "x3-2", Customer: "c-ext-3", Subscription: "sx-3", Type: "discount", EffectiveAt: "2026-04-05T00:00:00+02:00", Version: 2,
			Discount: &abacus.Discount{Key: "promo", Percent: "10"}},
	})
	sameSubLines(t, "x3-2", statusLines(res.Statuses), []string{"x3-2 applied v2"})
	if alerts := subOpenAlerts(t, a); len(alerts) != 0 {
		t.Fatalf("open alerts after the gap was filled: %+v", alerts)
	}
	var all struct{ Alerts []abacus.Alert }
	subMust(t, a, 200, "GET", "/v1/alerts", nil, &all)
	if len(all.Alerts) != 1 || all.Alerts[0].ID != al.ID || all.Alerts[0].ResolvedAt == nil || !all.Alerts[0].ResolvedAt.Equal(clock.Now()) {
		t.Fatalf("all alerts: %+v", all.Alerts)
	}
	if e := subEventView(t, a, "x3-3"); e.Status != abacus.SubEventApplied || e.GapOverdue || e.Version != 3 {
		t.Fatalf("x3-3 after the gap: %+v", e)
	}
	subMust(t, a, 200, "GET", "/v1/subscriptions/sx-3", nil, &sub)
	sameSubLines(t, "sx-3 phases", phaseLines(sub.Phases), []string{
		"pro v1 2026-03-31T22:00:00Z..2026-04-04T22:00:00Z",
		"pro v1 2026-04-04T22:00:00Z..2026-04-09T22:00:00Z -promo",
		"pro v1 2026-04-09T22:00:00Z..open -promo",
	})
	sameSubLines(t, "sx-3 charges at Apr 12", chargeLines(subCharges(t, a, "sx-3", "at=2026-04-12T00:00:00Z").Charges), []string{
		"base pro v1 EUR 30 advance 2026-04-09T22:00:00Z..open -promo:25",
		"calls pro v1 EUR calls@0.005 2026-04-09T22:00:00Z..open -promo:25",
	})
	subWaitFor(t, "abacus_subscription_gaps_open 0", func() bool { return subMetric(t, a, "abacus_subscription_gaps_open") == "0" })
	for outcome, want := range map[string]string{"applied": "13", "rejected": "2", "duplicate": "4", "held": "4"} {
		if got := subMetric(t, a, `abacus_subscription_events_total{outcome="`+outcome+`"}`); got != want {
			t.Errorf("abacus_subscription_events_total{outcome=%q} = %q, want %s", outcome, got, want)
		}
	}

	// An event of one customer naming another customer's subscription must
	// not change it: the versions order one customer's events only, and
	// the two customers' events are applied on different partitions.
	t.Run("another customer's subscription", func(t *testing.T) {
		res := subPostExternal(t, a, 400, []any{
			extEvent{ID: "cross-1", Customer: "c-ext-2", Subscription: "sx-1", Type: "discount", EffectiveAt: "2026-05-10T00:00:00Z", Version: 4,
				Discount: &abacus.Discount{Key: "intruder", Percent: "100"}},
		})
		var sx1 httpapi.SubscriptionResponse
		subMust(t, a, 200, "GET", "/v1/subscriptions/sx-1", nil, &sx1)
		if res.Accepted != 0 || len(res.Rejected) != 1 || res.Rejected[0].Field != "subscription" ||
			res.Rejected[0].Reason != "subscription sx-1 belongs to customer c-ext-1, not c-ext-2" || sx1.LastEventID != "x1-5" {
			t.Fatalf("cross-customer event: %+v; sx-1 last event %s", res, sx1.LastEventID)
		}
	})
}
