package subscription

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
)

func testPlans(t *testing.T) map[abacus.PlanRef]*abacus.Plan {
	t.Helper()
	out := map[abacus.PlanRef]*abacus.Plan{}
	for _, p := range []*abacus.Plan{
		{Key: "basic", Version: 1, Currency: "USD", Interval: abacus.IntervalMonth, Charges: []abacus.PlanCharge{
			{Key: "base", Type: abacus.ChargeRecurring, Amount: "10"},
			{Key: "calls", Type: abacus.ChargeUsage, Meter: "api_calls", Price: json.RawMessage(`{"version":1,"currency":"USD","model":"per_unit","unit_price":"0.01"}`)},
		}},
		{Key: "pro", Version: 1, Currency: "USD", Interval: abacus.IntervalMonth, Charges: []abacus.PlanCharge{
			{Key: "base", Type: abacus.ChargeRecurring, Amount: "30"},
			{Key: "calls", Type: abacus.ChargeUsage, Meter: "api_calls", Price: json.RawMessage(`{"version":1,"currency":"USD","model":"per_unit","unit_price":"0.005"}`)},
		}},
	} {
		if err := ValidatePlan(p); err != nil {
			t.Fatal(err)
		}
		out[abacus.PlanRef{Key: p.Key, Version: p.Version}] = p
	}
	return out
}

func TestDeriveUpgradeMidPeriod(t *testing.T) {
	plans := testPlans(t)
	src := func(r abacus.PlanRef) (*abacus.Plan, error) {
		if p, ok := plans[r]; ok {
			return p, nil
		}
		return nil, abacus.Errorf(abacus.ENOTFOUND, "no plan")
	}
	jan1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	jan16 := time.Date(2026, 1, 16, 0, 0, 0, 0, time.UTC)
	events := []*abacus.SubscriptionEvent{
		{ID: "e1", CustomerID: "c", SubscriptionID: "s", Type: abacus.SubStart, EffectiveAt: jan1, Version: 1, Plan: &abacus.PlanRef{Key: "basic", Version: 1}, Anchor: "calendar", TimeZone: "UTC"},
		{ID: "e2", CustomerID: "c", SubscriptionID: "s", Type: abacus.SubChange, EffectiveAt: jan16, Version: 2, Plan: &abacus.PlanRef{Key: "pro", Version: 1}},
	}
	sub, charges, err := Derive(events, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.Phases) != 2 || len(charges) != 4 {
		t.Fatalf("phases %d charges %d", len(sub.Phases), len(charges))
	}
	pr, err := Prorations(sub, charges)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range pr {
		got[p.Plan] = p.Days + " " + p.Amount
	}
	if got["basic v1"] != "15/31 4.84" || got["pro v1"] != "16/31 15.48" {
		t.Fatalf("prorations %v", got)
	}
}
