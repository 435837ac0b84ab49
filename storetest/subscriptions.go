package storetest

// Conformance tests of abacus.SubscriptionStore. Records are compared whole
// with reflect.DeepEqual after a round trip, so every field must come back
// exactly: times in UTC to the nanosecond, prices byte for byte, nil slices
// nil.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
)

// same fails the test unless got and want are deeply equal.
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	hint := ""
	if string(g) == string(w) {
		hint = "\n(equal as JSON: a field JSON leaves out differs, such as a tenant or a log position)"
	}
	t.Fatalf("%s:\n got %s\nwant %s%s", what, g, w, hint)
}

// empty fails the test unless a list has no elements. Stores may return nil
// or an empty slice.
func empty[T any](t *testing.T, what string, list []T, err error) {
	t.Helper()
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("%s = %d records, want none", what, len(list))
	}
}

func ptr[T any](v T) *T { return &v }

func day(n int) time.Time { return t0.AddDate(0, 0, n) }

// inTx runs fn in ApplySubscriptions and fails the test on an error. fn
// returns errors instead of failing the test itself, so that the
// transaction always ends.
func inTx(t *testing.T, s abacus.Store, fn func(ctx context.Context, tx abacus.SubscriptionTx) error) {
	t.Helper()
	ctx := context.Background()
	must(t, s.ApplySubscriptions(ctx, func(tx abacus.SubscriptionTx) error { return fn(ctx, tx) }))
}

// usagePrice holds < > &, which json.Marshal would escape: stores must
// return a price byte for byte as it was stored.
var usagePrice = json.RawMessage(`{"model":"tiered","tiers":[{"up_to":"1000","unit_amount":"0"},{"unit_amount":"0.002"}],"note":"<free> & cheap"}`)

func plan(tenant, key, name string) *abacus.Plan {
	return &abacus.Plan{
		TenantID: tenant, Key: key, Name: name, Description: "For teams", Currency: "EUR",
		Interval: abacus.IntervalMonth, IntervalCount: 1, TrialDays: 14,
		Charges: []abacus.PlanCharge{
			{Key: "base", Name: "Base fee", Type: abacus.ChargeRecurring, Amount: "49.00", Timing: abacus.InAdvance},
			{Key: "api_calls", Type: abacus.ChargeUsage, Meter: "api_calls", Price: usagePrice},
		},
		CreatedAt: t0.Add(123456789),
	}
}

func testPlans(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	var pro []*abacus.Plan
	for i := range 3 {
		p := plan("acme", "pro", fmt.Sprint("Pro ", i+1))
		p.CreatedAt = p.CreatedAt.Add(time.Duration(i) * time.Hour)
		must(t, s.CreatePlan(ctx, p))
		if p.Version != i+1 {
			t.Fatalf("pro version = %d, want %d", p.Version, i+1)
		}
		pro = append(pro, p)
	}
	basic := plan("acme", "basic", "Basic")
	basic.Charges = nil
	must(t, s.CreatePlan(ctx, basic))
	otherPro := plan("other", "pro", "Other pro")
	must(t, s.CreatePlan(ctx, otherPro))
	if basic.Version != 1 || otherPro.Version != 1 {
		t.Fatalf("first versions = %d, %d, want 1", basic.Version, otherPro.Version)
	}

	got, err := s.FindPlan(ctx, "acme", "pro", 0)
	must(t, err)
	same(t, "latest pro", got, pro[2])
	got, err = s.FindPlan(ctx, "acme", "pro", 2)
	must(t, err)
	same(t, "pro v2", got, pro[1])
	got, err = s.FindPlan(ctx, "other", "pro", 0)
	must(t, err)
	same(t, "other's pro", got, otherPro)
	for _, c := range []struct {
		tenant, key string
		version     int
	}{{"acme", "pro", 4}, {"acme", "nope", 0}, {"other", "basic", 0}, {"other", "pro", 2}} {
		_, err := s.FindPlan(ctx, c.tenant, c.key, c.version)
		wantCode(t, err, abacus.ENOTFOUND)
	}

	list, err := s.ListPlans(ctx, "acme")
	must(t, err)
	same(t, "acme's plans", list, []*abacus.Plan{basic, pro[2]})
	list, err = s.ListPlans(ctx, "other")
	must(t, err)
	same(t, "other's plans", list, []*abacus.Plan{otherPro})
	list, err = s.ListPlans(ctx, "nobody")
	empty(t, "plans of a tenant without any", list, err)
	list, err = s.ListPlanVersions(ctx, "acme", "pro")
	must(t, err)
	same(t, "pro versions", list, pro)
	list, err = s.ListPlanVersions(ctx, "acme", "nope")
	empty(t, "versions of a missing plan", list, err)

	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) (err error) {
		got, err = tx.FindPlan(ctx, "acme", "pro", 1)
		return err
	})
	same(t, "pro v1 in a transaction", got, pro[0])
}

// testPlanVersionsConcurrent: concurrent CreatePlans of one key get
// distinct versions, each stored with its own plan.
func testPlanVersionsConcurrent(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	const n = 8
	plans := make([]*abacus.Plan, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			plans[i] = plan("acme", "pro", fmt.Sprint("Pro ", i))
			errs[i] = s.CreatePlan(ctx, plans[i])
		})
	}
	wg.Wait()
	must(t, errors.Join(errs...))
	slices.SortFunc(plans, func(a, b *abacus.Plan) int { return a.Version - b.Version })
	for i, p := range plans {
		if p.Version != i+1 {
			t.Fatalf("versions are not 1..%d: %d at %d", n, p.Version, i)
		}
	}
	list, err := s.ListPlanVersions(ctx, "acme", "pro")
	must(t, err)
	same(t, "pro versions", list, plans)
}

// subEvent returns an event record; applied ones have AppliedAt.
func subEvent(tenant, id, customer, sub string, version int64, status abacus.SubscriptionEventStatus, received time.Time) *abacus.SubscriptionEventRecord {
	r := &abacus.SubscriptionEventRecord{
		SubscriptionEvent: abacus.SubscriptionEvent{
			TenantID: tenant, ID: id, CustomerID: customer, SubscriptionID: sub, Type: abacus.SubChange,
			EffectiveAt: received.Add(-time.Hour), Version: version, Source: "external", ReceivedAt: received,
			Plan: &abacus.PlanRef{Key: "pro", Version: 2},
		},
		Status: status, Partition: 2, Sequence: uint64(received.Sub(t0)),
	}
	if status == abacus.SubEventApplied {
		r.AppliedAt = ptr(received.Add(time.Second + 1))
	}
	return r
}

func putEvents(t *testing.T, s abacus.Store, rs ...*abacus.SubscriptionEventRecord) {
	t.Helper()
	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) error {
		for _, r := range rs {
			if err := tx.PutEvent(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
}

func listEvents(t *testing.T, s abacus.Store, f abacus.SubscriptionEventFilter) []*abacus.SubscriptionEventRecord {
	t.Helper()
	rs, err := s.ListSubscriptionEvents(context.Background(), f)
	must(t, err)
	return rs
}

func testSubscriptionEvents(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	// e1 carries every optional field of an event.
	e1 := &abacus.SubscriptionEventRecord{
		SubscriptionEvent: abacus.SubscriptionEvent{
			TenantID: "acme", ID: "e1", CustomerID: "c-1", SubscriptionID: "s-1", Type: abacus.SubStart,
			EffectiveAt: t0.Add(1), Version: 1, Source: "api", ReceivedAt: t0.Add(time.Minute + 2),
			Plan: &abacus.PlanRef{Key: "pro", Version: 1}, Anchor: abacus.AnchorAnniversary, TimeZone: "Europe/Berlin",
			Discount: &abacus.Discount{Key: "launch", Description: "Launch offer", Percent: "10", Items: []string{"base", "seats"}, Until: ptr(day(90).Add(3))},
		},
		Status: abacus.SubEventApplied, Duplicates: 0, AppliedAt: ptr(t0.Add(time.Minute + 3)), Partition: 1, Sequence: 17,
	}
	e5 := subEvent("acme", "e5", "c-2", "s-2", 1, abacus.SubEventApplied, e1.ReceivedAt)
	e2 := subEvent("acme", "e2", "c-1", "s-1", 2, abacus.SubEventApplied, t0.Add(2*time.Minute))
	e3 := subEvent("acme", "e3", "c-1", "s-1", 3, abacus.SubEventRejected, t0.Add(4*time.Minute))
	e3.Reason = "plan pro version 9 not found"
	e4 := subEvent("acme", "e4", "c-1", "s-1", 4, abacus.SubEventHeld, t0.Add(30*time.Second))
	ex := subEvent("acme", "ex", "c-1", "s-1", 0, abacus.SubEventHeld, t0.Add(10*time.Minute))
	ex.PreviousID, ex.Type, ex.Plan = "e4", abacus.SubRemoveDiscount, nil
	ex.DiscountKey = "launch"
	ey := subEvent("acme", "ey", "c-1", "s-1", 0, abacus.SubEventHeld, t0.Add(5*time.Minute))
	ey.PreviousID, ey.Type, ey.Plan = "e9", abacus.SubCancel, nil
	// Same ids in another tenant are other events.
	o1 := subEvent("other", "e1", "c-1", "s-1", 1, abacus.SubEventHeld, t0)
	putEvents(t, s, ex, e4, e3, e2, e1, e5, ey, o1)

	for _, want := range []*abacus.SubscriptionEventRecord{e1, e2, e3, e4, ex, o1} {
		got, err := s.FindSubscriptionEvent(ctx, want.TenantID, want.ID)
		must(t, err)
		same(t, "event "+want.TenantID+"/"+want.ID, got, want)
	}
	_, err := s.FindSubscriptionEvent(ctx, "acme", "nope")
	wantCode(t, err, abacus.ENOTFOUND)
	_, err = s.FindSubscriptionEvent(ctx, "other", "e2")
	wantCode(t, err, abacus.ENOTFOUND)

	// By version, unknown last; then received (ey before ex); then id (e1
	// and e5 were received at once).
	same(t, "acme's events", listEvents(t, s, abacus.SubscriptionEventFilter{TenantID: "acme"}),
		[]*abacus.SubscriptionEventRecord{e1, e5, e2, e3, e4, ey, ex})
	same(t, "c-1's held events", listEvents(t, s, abacus.SubscriptionEventFilter{TenantID: "acme", CustomerID: "c-1", Status: abacus.SubEventHeld}),
		[]*abacus.SubscriptionEventRecord{e4, ey, ex})
	same(t, "s-2's events", listEvents(t, s, abacus.SubscriptionEventFilter{TenantID: "acme", SubscriptionID: "s-2"}),
		[]*abacus.SubscriptionEventRecord{e5})
	same(t, "other's events", listEvents(t, s, abacus.SubscriptionEventFilter{TenantID: "other"}),
		[]*abacus.SubscriptionEventRecord{o1})
	rs, err := s.ListSubscriptionEvents(ctx, abacus.SubscriptionEventFilter{TenantID: "acme", CustomerID: "c-9"})
	empty(t, "events of a customer without any", rs, err)

	// PutEvent replaces: ex learns its version and is applied.
	ex.Version, ex.Status, ex.AppliedAt = 5, abacus.SubEventApplied, ptr(t0.Add(11*time.Minute))
	putEvents(t, s, ex)
	var inTxEx *abacus.SubscriptionEventRecord
	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) (err error) {
		inTxEx, err = tx.FindEvent(ctx, "acme", "ex")
		return err
	})
	same(t, "replaced ex in a transaction", inTxEx, ex)
	same(t, "c-1's events after ex applied", listEvents(t, s, abacus.SubscriptionEventFilter{TenantID: "acme", CustomerID: "c-1"}),
		[]*abacus.SubscriptionEventRecord{e1, e2, e3, e4, ex, ey})

	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) error {
		return errors.Join(tx.AddDuplicate(ctx, "acme", "e1"), tx.AddDuplicate(ctx, "acme", "e1"))
	})
	e1.Duplicates = 2
	got, err := s.FindSubscriptionEvent(ctx, "acme", "e1")
	must(t, err)
	same(t, "e1 after two duplicates", got, e1)
	got, err = s.FindSubscriptionEvent(ctx, "other", "e1")
	must(t, err)
	same(t, "other's e1 after acme's duplicates", got, o1)
	for _, id := range []string{"nope", "e2"} { // e2 is acme's
		err := s.ApplySubscriptions(ctx, func(tx abacus.SubscriptionTx) error { return tx.AddDuplicate(ctx, "other", id) })
		wantCode(t, err, abacus.ENOTFOUND)
	}
}

func testSubscriptionHeads(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	var before, after abacus.SubscriptionHead
	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) (err error) {
		if before, err = tx.Head(ctx, "acme", "c-1"); err != nil {
			return err
		}
		if err := tx.SetHead(ctx, abacus.SubscriptionHead{TenantID: "acme", CustomerID: "c-1", Version: 3, EventID: "e3"}); err != nil {
			return err
		}
		after, err = tx.Head(ctx, "acme", "c-1")
		return err
	})
	same(t, "head before any", before, abacus.SubscriptionHead{TenantID: "acme", CustomerID: "c-1"})
	same(t, "head after SetHead in the transaction", after, abacus.SubscriptionHead{TenantID: "acme", CustomerID: "c-1", Version: 3, EventID: "e3"})
	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) error {
		return tx.SetHead(ctx, abacus.SubscriptionHead{TenantID: "acme", CustomerID: "c-1", Version: 4, EventID: "e4"})
	})
	for _, c := range []struct {
		tenant, customer string
		want             abacus.SubscriptionHead
	}{
		{"acme", "c-1", abacus.SubscriptionHead{TenantID: "acme", CustomerID: "c-1", Version: 4, EventID: "e4"}},
		{"acme", "c-2", abacus.SubscriptionHead{TenantID: "acme", CustomerID: "c-2"}},
		{"other", "c-1", abacus.SubscriptionHead{TenantID: "other", CustomerID: "c-1"}},
	} {
		got, err := s.SubscriptionHead(ctx, c.tenant, c.customer)
		must(t, err)
		same(t, "head of "+c.tenant+"/"+c.customer, got, c.want)
	}
}

func testNextHeld(t *testing.T, s abacus.Store) {
	defer s.Close()
	h3 := subEvent("acme", "h3", "c-1", "s-1", 3, abacus.SubEventHeld, t0.Add(2*time.Minute))
	h3first := subEvent("acme", "h3-first", "c-1", "s-1", 3, abacus.SubEventHeld, t0.Add(time.Minute))
	a4 := subEvent("acme", "a4", "c-1", "s-1", 4, abacus.SubEventApplied, t0)
	after5 := subEvent("acme", "after-e5", "c-1", "s-1", 0, abacus.SubEventHeld, t0)
	after5.PreviousID = "e5"
	c2 := subEvent("acme", "c2", "c-2", "s-2", 4, abacus.SubEventHeld, t0)
	c2.PreviousID = "e7"
	o4 := subEvent("other", "o4", "c-1", "s-1", 4, abacus.SubEventHeld, t0)
	o4.PreviousID = "e7"
	putEvents(t, s, h3, h3first, a4, after5, c2, o4)

	for _, c := range []struct {
		version  int64
		previous string
		want     *abacus.SubscriptionEventRecord // nil: ENOTFOUND
	}{
		{3, "e2", h3first}, // by version, the first received of two
		{3, "e5", h3first}, // the version wins over the previous id
		{6, "e5", after5},  // by previous id
		{4, "", nil},       // a4 is applied, c2 another customer's, o4 another tenant's
		{4, "e7", nil},     // the same by previous id
		{7, "e6", nil},     // nothing
	} {
		var got *abacus.SubscriptionEventRecord
		err := s.ApplySubscriptions(context.Background(), func(tx abacus.SubscriptionTx) (err error) {
			got, err = tx.NextHeld(context.Background(), "acme", "c-1", c.version, c.previous)
			return err
		})
		what := fmt.Sprintf("NextHeld(%d, %q)", c.version, c.previous)
		if c.want == nil {
			if code := abacus.ErrorCode(err); code != abacus.ENOTFOUND {
				t.Fatalf("%s: error code %q (%v), want %q", what, code, err, abacus.ENOTFOUND)
			}
			continue
		}
		must(t, err)
		same(t, what, got, c.want)
	}
}

func testAppliedEvents(t *testing.T, s abacus.Store) {
	defer s.Close()
	a1 := subEvent("acme", "a1", "c-1", "s-1", 1, abacus.SubEventApplied, t0.Add(3*time.Minute))
	a2 := subEvent("acme", "a2", "c-1", "s-1", 2, abacus.SubEventApplied, t0.Add(time.Minute))
	a3 := subEvent("acme", "a3", "c-1", "s-1", 3, abacus.SubEventApplied, t0.Add(2*time.Minute))
	putEvents(t, s, a3, a1, a2,
		subEvent("acme", "h4", "c-1", "s-1", 4, abacus.SubEventHeld, t0),
		subEvent("acme", "r5", "c-1", "s-1", 5, abacus.SubEventRejected, t0),
		subEvent("acme", "b1", "c-1", "s-2", 6, abacus.SubEventApplied, t0),
		subEvent("other", "a1", "c-1", "s-1", 1, abacus.SubEventApplied, t0))
	var got, none []*abacus.SubscriptionEventRecord
	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) (err error) {
		if got, err = tx.AppliedEvents(ctx, "acme", "s-1"); err != nil {
			return err
		}
		none, err = tx.AppliedEvents(ctx, "acme", "s-9")
		return err
	})
	same(t, "applied events of s-1", got, []*abacus.SubscriptionEventRecord{a1, a2, a3})
	empty(t, "applied events of a subscription without any", none, nil)
}

func testHeldSince(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	a1 := subEvent("a", "e1", "c-1", "s-1", 2, abacus.SubEventHeld, t0.Add(time.Minute))
	b3 := subEvent("b", "e3", "c-1", "s-1", 2, abacus.SubEventHeld, t0.Add(time.Minute))
	b1 := subEvent("b", "e1", "c-1", "s-1", 3, abacus.SubEventHeld, t0.Add(2*time.Minute))
	putEvents(t, s, b1, a1, b3,
		subEvent("a", "e2", "c-1", "s-1", 4, abacus.SubEventHeld, t0.Add(3*time.Minute)),
		subEvent("a", "e0", "c-1", "s-1", 1, abacus.SubEventApplied, t0))
	got, err := s.HeldSince(ctx, t0.Add(3*time.Minute))
	must(t, err)
	same(t, "held before 3m", got, []*abacus.SubscriptionEventRecord{a1, b3, b1})
	got, err = s.HeldSince(ctx, t0.Add(time.Minute+1))
	must(t, err)
	same(t, "held before 1m+1ns", got, []*abacus.SubscriptionEventRecord{a1, b3})
	got, err = s.HeldSince(ctx, t0.Add(time.Minute))
	empty(t, "held before 1m (exclusive)", got, err)
}

// subscription returns a subscription whose times are all in loc.
func subscription(tenant, id, customer string, start time.Time, loc *time.Location) *abacus.Subscription {
	start = start.In(loc)
	trialEnd := start.AddDate(0, 0, 14)
	return &abacus.Subscription{
		TenantID: tenant, ID: id, CustomerID: customer, Currency: "EUR", TimeZone: "Europe/Berlin",
		Interval: abacus.IntervalMonth, IntervalCount: 1, Anchor: abacus.AnchorCalendar, AnchorAt: start.Add(7),
		StartAt: start, TrialEndsAt: &trialEnd,
		Phases: []abacus.Phase{
			{From: start, To: &trialEnd, Plan: abacus.PlanRef{Key: "pro", Version: 1}, Trial: true},
			{From: trialEnd, Plan: abacus.PlanRef{Key: "pro", Version: 1},
				Discounts: []abacus.Discount{{Key: "launch", Percent: "10", Items: []string{"base"}, Until: ptr(trialEnd.AddDate(0, 3, 0))}}},
		},
		Version: 2, LastEventID: "e2", UpdatedAt: t0.Add(987654321).In(loc),
	}
}

func testSubscriptions(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	// Times given in another zone come back in UTC.
	cet := time.FixedZone("CET", 3600)
	put := func(subs ...*abacus.Subscription) {
		inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) error {
			for _, sub := range subs {
				if err := tx.PutSubscription(ctx, sub); err != nil {
					return err
				}
			}
			return nil
		})
	}
	put(subscription("acme", "s-2", "c-1", day(1), cet), subscription("acme", "s-1", "c-1", day(1), cet),
		subscription("acme", "s-3", "c-1", day(0), cet), subscription("acme", "s-9", "c-2", day(0), cet),
		subscription("other", "s-1", "c-1", day(5), cet))
	s1, s2, s3 := subscription("acme", "s-1", "c-1", day(1), time.UTC), subscription("acme", "s-2", "c-1", day(1), time.UTC), subscription("acme", "s-3", "c-1", day(0), time.UTC)

	got, err := s.FindSubscription(ctx, "acme", "s-1")
	must(t, err)
	same(t, "s-1", got, s1)
	got, err = s.FindSubscription(ctx, "other", "s-1")
	must(t, err)
	same(t, "other's s-1", got, subscription("other", "s-1", "c-1", day(5), time.UTC))
	_, err = s.FindSubscription(ctx, "acme", "nope")
	wantCode(t, err, abacus.ENOTFOUND)
	_, err = s.FindSubscription(ctx, "other", "s-2")
	wantCode(t, err, abacus.ENOTFOUND)

	list, err := s.ListSubscriptions(ctx, "acme", "c-1")
	must(t, err)
	same(t, "c-1's subscriptions by start, then id", list, []*abacus.Subscription{s3, s1, s2})
	list, err = s.ListSubscriptions(ctx, "acme", "c-9")
	empty(t, "subscriptions of a customer without any", list, err)

	// PutSubscription replaces the whole read model.
	s1.EndsAt, s1.Phases, s1.Version, s1.LastEventID = ptr(day(40)), s1.Phases[:1], 3, "e3"
	put(s1)
	var inTxS1 *abacus.Subscription
	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) (err error) {
		inTxS1, err = tx.FindSubscription(ctx, "acme", "s-1")
		return err
	})
	same(t, "replaced s-1 in a transaction", inTxS1, s1)
	list, err = s.ListSubscriptions(ctx, "acme", "c-1")
	must(t, err)
	same(t, "c-1's subscriptions after the replace", list, []*abacus.Subscription{s3, s1, s2})
}

// charge returns a charge record of item "base" (recurring) or "api_calls"
// (usage).
func charge(tenant, id, sub, item string, starts time.Time, ends *time.Time, recorded time.Time) *abacus.Charge {
	c := &abacus.Charge{
		TenantID: tenant, ID: id, SubscriptionID: sub, CustomerID: "c-1", Item: item, Plan: abacus.PlanRef{Key: "pro", Version: 1},
		Currency: "EUR", StartsAt: starts, EndsAt: ends, EventID: "e-" + id, RecordedAt: recorded,
	}
	if item == "base" {
		c.Type, c.Amount, c.Timing = abacus.ChargeRecurring, "49.00", abacus.InAdvance
		c.Discounts = []abacus.Discount{{Key: "launch", Percent: "10", Until: ptr(day(30))}}
	} else {
		c.Name, c.Type, c.Meter, c.Price = "API calls", abacus.ChargeUsage, "api_calls", usagePrice
	}
	return c
}

// superseded returns a copy of c superseded at t.
func superseded(c *abacus.Charge, t time.Time) *abacus.Charge {
	s := *c
	s.SupersededAt = &t
	return &s
}

func testCharges(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	r1 := t0.Add(time.Hour + 1)
	r2, r3 := r1.Add(time.Hour), r1.Add(2*time.Hour)
	write := func(supersede []string, at time.Time, cs ...*abacus.Charge) error {
		return s.ApplySubscriptions(ctx, func(tx abacus.SubscriptionTx) error {
			if err := tx.SupersedeCharges(ctx, "acme", supersede, at); err != nil {
				return err
			}
			return tx.InsertCharges(ctx, cs)
		})
	}
	// r1: base A over [day 0, day 10), usage B from an hour later on:
	// records are ordered by item before their start.
	bStart := day(0).Add(time.Hour)
	a1 := charge("acme", "A", "s-1", "base", day(0), ptr(day(10)), r1)
	b := charge("acme", "B", "s-1", "api_calls", bStart, nil, r1)
	must(t, write(nil, r1, a1, b,
		charge("acme", "D", "s-2", "base", day(0), nil, r1),
		charge("other", "A", "s-1", "base", day(0), ptr(day(10)), r1)))
	// r2: A is replaced by A2 over [day 0, day 5) and C from day 5 on.
	a2 := charge("acme", "A2", "s-1", "base", day(0), ptr(day(5)), r2)
	c := charge("acme", "C", "s-1", "base", day(5), nil, r2)
	must(t, write([]string{"A"}, r2, a2, c))
	// r3: a late event undoes that: A, with the same terms, is recorded
	// again. Unknown ids are ignored.
	a3 := charge("acme", "A", "s-1", "base", day(0), ptr(day(10)), r3)
	must(t, write([]string{"A2", "C", "nope"}, r3, a3))
	// Recording an id that is current is a bug in the caller.
	wantCode(t, write(nil, r3, charge("acme", "B", "s-1", "api_calls", bStart, nil, r3)), abacus.ECONFLICT)
	wantCode(t, write(nil, r3, a3), abacus.ECONFLICT)

	a1, a2, c = superseded(a1, r2), superseded(a2, r3), superseded(c, r3)
	for _, tc := range []struct {
		what     string
		at, asOf *time.Time
		want     []*abacus.Charge
	}{
		{"current", nil, nil, []*abacus.Charge{b, a3}},
		{"as of just before r1", nil, ptr(r1.Add(-1)), nil},
		{"as of r1 (recorded_at inclusive)", nil, &r1, []*abacus.Charge{b, a1}},
		{"as of just before r2", nil, ptr(r2.Add(-1)), []*abacus.Charge{b, a1}},
		{"as of r2 (superseded_at exclusive)", nil, &r2, []*abacus.Charge{b, a2, c}},
		{"as of r3", nil, &r3, []*abacus.Charge{b, a3}},
		{"at day 5 as of r2 (starts_at inclusive, ends_at exclusive)", ptr(day(5)), &r2, []*abacus.Charge{b, c}},
		{"at just before day 5 as of r2", ptr(day(5).Add(-1)), &r2, []*abacus.Charge{b, a2}},
		{"at day 10 as of r1", ptr(day(10)), &r1, []*abacus.Charge{b}},
		{"at just before day 10 as of r1", ptr(day(10).Add(-1)), &r1, []*abacus.Charge{b, a1}},
		{"at day 0", ptr(day(0)), nil, []*abacus.Charge{a3}},
		{"at B's start", &bStart, nil, []*abacus.Charge{b, a3}},
		{"at just before day 0", ptr(day(0).Add(-1)), nil, nil},
	} {
		got, err := s.ListCharges(ctx, abacus.ChargeFilter{TenantID: "acme", SubscriptionID: "s-1", At: tc.at, AsOf: tc.asOf})
		if tc.want == nil {
			empty(t, tc.what, got, err)
			continue
		}
		must(t, err)
		same(t, tc.what, got, tc.want)
	}
	var current []*abacus.Charge
	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) (err error) {
		current, err = tx.CurrentCharges(ctx, "acme", "s-1")
		return err
	})
	same(t, "current charges in a transaction", current, []*abacus.Charge{b, a3})
	got, err := s.ListCharges(ctx, abacus.ChargeFilter{TenantID: "other", SubscriptionID: "s-1", AsOf: &r3})
	must(t, err)
	same(t, "other's charges (untouched by acme's supersedes)", got, []*abacus.Charge{charge("other", "A", "s-1", "base", day(0), ptr(day(10)), r1)})
}

func testAlerts(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	gap := func(tenant, id string, raised time.Time) *abacus.Alert {
		return &abacus.Alert{TenantID: tenant, ID: id, Kind: abacus.AlertSubscriptionGap, Subject: "customer c-1",
			Message: "event e4 waits for version 3", Details: json.RawMessage(`{"event": "e4", "waiting_for": 3}`), RaisedAt: raised}
	}
	a1, a2, o1 := gap("acme", "a1", t0.Add(1)), gap("acme", "a2", t0.Add(time.Minute)), gap("other", "a1", t0)
	a2.Details = nil
	raise := func(a *abacus.Alert) {
		inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) error {
			if err := tx.Lock(ctx, "gap:"+a.TenantID); err != nil {
				return err
			}
			return tx.RaiseAlert(ctx, a)
		})
	}
	for _, a := range []*abacus.Alert{a1, a2, o1} {
		raise(a)
	}
	again := gap("acme", "a1", t0.Add(time.Hour))
	again.Message = "raised again"
	raise(again) // ignored: a1 exists
	list := func(tenant string, openOnly bool) []*abacus.Alert {
		as, err := s.ListAlerts(ctx, tenant, openOnly)
		must(t, err)
		return as
	}
	same(t, "acme's alerts", list("acme", false), []*abacus.Alert{a2, a1})

	resolve := func(tenant, id string, at time.Time) {
		inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) error { return tx.ResolveAlert(ctx, tenant, id, at) })
	}
	resolve("acme", "a1", t0.Add(2*time.Minute))
	resolve("acme", "a1", t0.Add(5*time.Minute)) // already resolved: kept
	resolve("acme", "nope", t0)                  // absent: no error
	a1.ResolvedAt = ptr(t0.Add(2 * time.Minute))
	same(t, "acme's alerts after a1 is resolved", list("acme", false), []*abacus.Alert{a2, a1})
	same(t, "acme's open alerts", list("acme", true), []*abacus.Alert{a2})
	same(t, "other's open alerts", list("other", true), []*abacus.Alert{o1})
	if as, err := s.ListAlerts(ctx, "nobody", false); err != nil || len(as) != 0 {
		t.Fatalf("alerts of a tenant without any = %d, %v", len(as), err)
	}
}

// testSubscriptionRollback: a failed ApplySubscriptions leaves nothing
// behind, though fn read its own writes.
func testSubscriptionRollback(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	alert := &abacus.Alert{TenantID: "acme", ID: "a1", Kind: abacus.AlertSubscriptionGap, Subject: "customer c-1", Message: "gap", RaisedAt: t0}
	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) error { return tx.RaiseAlert(ctx, alert) })
	e1 := subEvent("acme", "e1", "c-1", "s-1", 1, abacus.SubEventApplied, t0)
	sub := subscription("acme", "s-1", "c-1", t0, time.UTC)
	ch := charge("acme", "A", "s-1", "base", t0, nil, t0)
	boom := errors.New("boom")
	var seen []string
	err := s.ApplySubscriptions(ctx, func(tx abacus.SubscriptionTx) error {
		if err := errors.Join(
			tx.PutEvent(ctx, e1),
			tx.SetHead(ctx, abacus.SubscriptionHead{TenantID: "acme", CustomerID: "c-1", Version: 1, EventID: "e1"}),
			tx.PutSubscription(ctx, sub),
			tx.InsertCharges(ctx, []*abacus.Charge{ch}),
			tx.SetPosition(ctx, 0, 9),
			tx.ResolveAlert(ctx, "acme", "a1", t0.Add(time.Minute)),
		); err != nil {
			return err
		}
		if r, err := tx.FindEvent(ctx, "acme", "e1"); err == nil && reflect.DeepEqual(r, e1) {
			seen = append(seen, "event")
		}
		if h, err := tx.Head(ctx, "acme", "c-1"); err == nil && h.Version == 1 {
			seen = append(seen, "head")
		}
		if got, err := tx.FindSubscription(ctx, "acme", "s-1"); err == nil && reflect.DeepEqual(got, sub) {
			seen = append(seen, "subscription")
		}
		if cs, err := tx.CurrentCharges(ctx, "acme", "s-1"); err == nil && reflect.DeepEqual(cs, []*abacus.Charge{ch}) {
			seen = append(seen, "charges")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("ApplySubscriptions err = %v, want boom", err)
	}
	same(t, "own writes seen in the transaction", seen, []string{"event", "head", "subscription", "charges"})

	_, err = s.FindSubscriptionEvent(ctx, "acme", "e1")
	wantCode(t, err, abacus.ENOTFOUND)
	h, err := s.SubscriptionHead(ctx, "acme", "c-1")
	must(t, err)
	same(t, "head after rollback", h, abacus.SubscriptionHead{TenantID: "acme", CustomerID: "c-1"})
	_, err = s.FindSubscription(ctx, "acme", "s-1")
	wantCode(t, err, abacus.ENOTFOUND)
	cs, err := s.ListCharges(ctx, abacus.ChargeFilter{TenantID: "acme", SubscriptionID: "s-1"})
	empty(t, "charges after rollback", cs, err)
	pos, err := s.SubscriptionPositions(ctx)
	must(t, err)
	if len(pos) != 0 {
		t.Fatalf("positions after rollback = %v", pos)
	}
	as, err := s.ListAlerts(ctx, "acme", true)
	must(t, err)
	same(t, "open alerts after rollback", as, []*abacus.Alert{alert})
}

func testSubscriptionPositions(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	pos, err := s.SubscriptionPositions(ctx)
	must(t, err)
	if len(pos) != 0 {
		t.Fatalf("positions of an empty store = %v", pos)
	}
	set := func(partition int, seq uint64) {
		inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) error { return tx.SetPosition(ctx, partition, seq) })
	}
	set(0, 5)
	set(2, 1<<40)
	set(0, 7)
	pos, err = s.SubscriptionPositions(ctx)
	must(t, err)
	same(t, "subscription positions", pos, map[int]uint64{0: 7, 2: 1 << 40})
	// The aggregator's positions are another log's.
	if agg, err := s.Positions(ctx); err != nil || len(agg) != 0 {
		t.Fatalf("aggregator positions = %v, %v", agg, err)
	}
}
