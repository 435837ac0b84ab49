package subscription_test

// Exact proration numbers for docs/subscriptions.md. Each test logs its
// table (go test -v -run Proration ./subscription/) and checks it against
// values worked out by hand in the comments.
//
// The rule (rating.Prorate): amount × days(part) / days(period), where a
// day is a calendar day in the customer's zone, the day of a change belongs
// to the charge that starts that day, and the result is rounded once, half
// up, to the cent.

import (
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/subscription"
)

// prorate derives the history (in version order) with the catalog plans
// (basic 10/month, pro 30/month, both in advance; plus extra) and returns
// the subscription and its prorations.
func prorate(t *testing.T, extra []*abacus.Plan, events ...*abacus.SubscriptionEvent) (*abacus.Subscription, []subscription.Proration) {
	t.Helper()
	plans := catalogPlans(t)
	for _, p := range extra {
		if err := subscription.ValidatePlan(p); err != nil {
			t.Fatal(err)
		}
		plans[abacus.PlanRef{Key: p.Key, Version: p.Version}] = p
	}
	for i, e := range events {
		e.CustomerID, e.SubscriptionID, e.Version = "c1", "s1", int64(i+1)
		if e.ID == "" {
			e.ID = "e" + string(rune('1'+i))
		}
	}
	sub, charges, err := subscription.Derive(events, planSource(plans))
	if err != nil {
		t.Fatal(err)
	}
	pr, err := subscription.Prorations(sub, charges)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("\n  plan      item  period                                          charged                                         days   full   amount\n")
	for _, p := range pr {
		b.WriteString("  " + padRight(p.Plan, 9) + " " + padRight(p.Item, 5) + " [" + stamp(p.PeriodStart) + ", " + stamp(p.PeriodEnd) + ")  [" +
			stamp(p.From) + ", " + stamp(p.To) + ")  " + padRight(p.Days, 5) + "  " + padRight(p.FullAmount, 5) + "  " + p.Amount + " " + p.Currency + "\n")
	}
	if len(pr) == 0 {
		b.WriteString("  (none: whole periods only)\n")
	}
	t.Logf("prorations (%s, calendar anchor):%s", sub.TimeZone, b.String())
	return sub, pr
}

func padRight(s string, n int) string {
	for len(s) < n {
		s += " "
	}
	return s
}

func start(at string, plan, tz string) *abacus.SubscriptionEvent {
	return &abacus.SubscriptionEvent{Type: abacus.SubStart, EffectiveAt: ts(at), Plan: &abacus.PlanRef{Key: plan, Version: 1},
		Anchor: abacus.AnchorCalendar, TimeZone: tz}
}

func change(at, plan string) *abacus.SubscriptionEvent {
	return &abacus.SubscriptionEvent{Type: abacus.SubChange, EffectiveAt: ts(at), Plan: &abacus.PlanRef{Key: plan, Version: 1}}
}

func cancelAt(at string) *abacus.SubscriptionEvent {
	return &abacus.SubscriptionEvent{Type: abacus.SubCancel, EffectiveAt: ts(at)}
}

// wantProration is an expected proration; times RFC 3339 or dates.
type wantProration struct {
	Plan, Item               string
	PeriodStart, PeriodEnd   string
	From, To                 string
	Days, FullAmount, Amount string
}

func assertProrations(t *testing.T, got []subscription.Proration, want []wantProration) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d prorations, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Plan != w.Plan || g.Item != w.Item || !g.PeriodStart.Equal(ts(w.PeriodStart)) || !g.PeriodEnd.Equal(ts(w.PeriodEnd)) ||
			!g.From.Equal(ts(w.From)) || !g.To.Equal(ts(w.To)) || g.Days != w.Days || g.FullAmount != w.FullAmount ||
			g.Amount != w.Amount || g.Currency != "USD" {
			t.Errorf("proration %d:\n got %s %s period [%s, %s) [%s, %s) %s of %s = %s %s\nwant %+v", i, g.Plan, g.Item,
				stamp(g.PeriodStart), stamp(g.PeriodEnd), stamp(g.From), stamp(g.To), g.Days, g.FullAmount, g.Amount, g.Currency, w)
		}
	}
}

// (i) Upgrade mid-period, UTC: basic from Jan 1, pro from Jan 16.
//
// January has 31 days. Basic covers Jan 1..15 = 15 days: 10.00 × 15/31 =
// 4.838709... → 4.84. Pro covers Jan 16..31 = 16 days (the day of the
// change is pro's): 30.00 × 16/31 = 15.483870... → 15.48. Together 20.32;
// the usage item (calls) has no proration.
func TestProrationUpgradeMidPeriodUTC(t *testing.T) {
	_, pr := prorate(t, nil, start("2026-01-01", "basic", "UTC"), change("2026-01-16", "pro"))
	assertProrations(t, pr, []wantProration{
		{Plan: "basic v1", Item: "base", PeriodStart: "2026-01-01", PeriodEnd: "2026-02-01", From: "2026-01-01", To: "2026-01-16", Days: "15/31", FullAmount: "10", Amount: "4.84"},
		{Plan: "pro v1", Item: "base", PeriodStart: "2026-01-01", PeriodEnd: "2026-02-01", From: "2026-01-16", To: "2026-02-01", Days: "16/31", FullAmount: "30", Amount: "15.48"},
	})
}

// (ii) Downgrade pro → basic at the period end (effective Feb 1): pro
// covers the whole of January and basic starts with a whole period, so
// there is nothing to prorate (pro bills 30.00 for January, basic 10.00
// from February).
func TestProrationDowngradeAtPeriodEnd(t *testing.T) {
	sub, pr := prorate(t, nil, start("2026-01-01", "pro", "UTC"), change("2026-02-01", "basic"))
	assertProrations(t, pr, nil)
	if len(sub.Phases) != 2 || sub.Phases[1].Plan.Key != "basic" || !sub.Phases[1].From.Equal(ts("2026-02-01")) {
		t.Errorf("phases %+v, want pro then basic from Feb 1", sub.Phases)
	}
}

// (iii) Cancel now, at 2026-01-21 10:00 UTC, on pro: the day of the cancel
// is not billed, so pro covers Jan 1..20 = 20 days: 30.00 × 20/31 =
// 19.354838... → 19.35.
func TestProrationCancelNow(t *testing.T) {
	_, pr := prorate(t, nil, start("2026-01-01", "pro", "UTC"), cancelAt("2026-01-21T10:00:00Z"))
	assertProrations(t, pr, []wantProration{
		{Plan: "pro v1", Item: "base", PeriodStart: "2026-01-01", PeriodEnd: "2026-02-01", From: "2026-01-01", To: "2026-01-21T10:00:00Z", Days: "20/31", FullAmount: "30", Amount: "19.35"},
	})
}

// Rounding is half up, once, on the exact product: a plan of 1.05/month
// canceled on Feb 15 covers Feb 1..14 = 14 of February's 28 days: 1.05 ×
// 14/28 = 0.525 exactly → 0.53 (half-even would give 0.52; truncation
// 0.52). And 10.00 × 1/31 = 0.32258... → 0.32 (not a tie: rounds down).
func TestProrationRoundsHalfUp(t *testing.T) {
	tiny := &abacus.Plan{Key: "tiny", Version: 1, Currency: "USD", Interval: abacus.IntervalMonth,
		Charges: []abacus.PlanCharge{{Key: "base", Type: abacus.ChargeRecurring, Amount: "1.05"}}}
	_, pr := prorate(t, []*abacus.Plan{tiny}, start("2026-02-01", "tiny", "UTC"), cancelAt("2026-02-15"))
	assertProrations(t, pr, []wantProration{
		{Plan: "tiny v1", Item: "base", PeriodStart: "2026-02-01", PeriodEnd: "2026-03-01", From: "2026-02-01", To: "2026-02-15", Days: "14/28", FullAmount: "1.05", Amount: "0.53"},
	})
	_, pr = prorate(t, nil, start("2026-01-31", "basic", "UTC"))
	assertProrations(t, pr, []wantProration{
		{Plan: "basic v1", Item: "base", PeriodStart: "2026-01-01", PeriodEnd: "2026-02-01", From: "2026-01-31", To: "2026-02-01", Days: "1/31", FullAmount: "10", Amount: "0.32"},
	})
}

// (iv) Europe/Berlin, upgrade on the evening of the DST change day.
//
// The customer starts on basic at 2026-03-01 00:00 CET (= 2026-02-28
// 23:00Z). Clocks go from 02:00 CET to 03:00 CEST on Sunday 2026-03-29;
// the upgrade to pro takes effect at 2026-03-29 23:30 CEST (= 21:30Z). The
// March period runs from Mar 1 00:00 CET (Feb 28 23:00Z) to Apr 1 00:00
// CEST (Mar 31 22:00Z): 31 local days, although it lasts 743 hours. Basic
// covers Mar 1..28 = 28 days: 10.00 × 28/31 = 9.032258... → 9.03. Pro
// covers Mar 29..31 = 3 days: 30.00 × 3/31 = 2.903225... → 2.90.
//
// Counted by UTC date instead, the change (Mar 29 UTC) would fall 29 days
// after the start (Feb 28 UTC): 9.35 and 1.94. The local calendar decides.
func TestProrationUpgradeOnDSTDayBerlin(t *testing.T) {
	_, pr := prorate(t, nil, start("2026-02-28T23:00:00Z", "basic", "Europe/Berlin"), change("2026-03-29T21:30:00Z", "pro"))
	assertProrations(t, pr, []wantProration{
		{Plan: "basic v1", Item: "base", PeriodStart: "2026-02-28T23:00:00Z", PeriodEnd: "2026-03-31T22:00:00Z", From: "2026-02-28T23:00:00Z", To: "2026-03-29T21:30:00Z", Days: "28/31", FullAmount: "10", Amount: "9.03"},
		{Plan: "pro v1", Item: "base", PeriodStart: "2026-02-28T23:00:00Z", PeriodEnd: "2026-03-31T22:00:00Z", From: "2026-03-29T21:30:00Z", To: "2026-03-31T22:00:00Z", Days: "3/31", FullAmount: "30", Amount: "2.90"},
	})
	berlin, _ := time.LoadLocation("Europe/Berlin")
	if h := ts("2026-03-31T22:00:00Z").Sub(ts("2026-02-28T23:00:00Z")).Hours(); h != 743 {
		t.Errorf("the March period lasts %v hours", h)
	}
	if d := ts("2026-03-29T21:30:00Z").In(berlin); d.Day() != 29 || d.Hour() != 23 {
		t.Errorf("the change is at %s local", d)
	}
}
