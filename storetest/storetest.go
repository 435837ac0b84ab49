// Package storetest is the one conformance suite every abacus.Store
// implementation passes. Each implementation's tests call Exercise with a
// function that opens a fresh, empty, migrated store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/jsonenc"
	"github.com/cockroachdb/apd/v3"
)

// Exercise runs the whole suite. open must return an empty store; Exercise
// closes it.
func Exercise(t *testing.T, open func(t *testing.T) abacus.Store) {
	t.Run("Tenants", func(t *testing.T) { testTenants(t, open(t)) })
	t.Run("APIKeys", func(t *testing.T) { testAPIKeys(t, open(t)) })
	t.Run("Customers", func(t *testing.T) { testCustomers(t, open(t)) })
	t.Run("Meters", func(t *testing.T) { testMeters(t, open(t)) })
	t.Run("ApplyDedup", func(t *testing.T) { testApplyDedup(t, open(t)) })
	t.Run("ApplyDedupMany", func(t *testing.T) { testApplyDedupMany(t, open(t)) })
	t.Run("ApplyRollback", func(t *testing.T) { testApplyRollback(t, open(t)) })
	t.Run("CountedLists", func(t *testing.T) { testCountedLists(t, open(t)) })
	t.Run("Rollups", func(t *testing.T) { testRollups(t, open(t)) })
	t.Run("Uniques", func(t *testing.T) { testUniques(t, open(t)) })
	t.Run("TenantIsolation", func(t *testing.T) { testTenantIsolation(t, open(t)) })
	t.Run("Plans", func(t *testing.T) { testPlans(t, open(t)) })
	t.Run("PlanVersionsConcurrent", func(t *testing.T) { testPlanVersionsConcurrent(t, open(t)) })
	t.Run("SubscriptionEvents", func(t *testing.T) { testSubscriptionEvents(t, open(t)) })
	t.Run("SubscriptionHeads", func(t *testing.T) { testSubscriptionHeads(t, open(t)) })
	t.Run("NextHeld", func(t *testing.T) { testNextHeld(t, open(t)) })
	t.Run("AppliedEvents", func(t *testing.T) { testAppliedEvents(t, open(t)) })
	t.Run("HeldSince", func(t *testing.T) { testHeldSince(t, open(t)) })
	t.Run("Subscriptions", func(t *testing.T) { testSubscriptions(t, open(t)) })
	t.Run("Charges", func(t *testing.T) { testCharges(t, open(t)) })
	t.Run("Alerts", func(t *testing.T) { testAlerts(t, open(t)) })
	t.Run("SubscriptionRollback", func(t *testing.T) { testSubscriptionRollback(t, open(t)) })
	t.Run("SubscriptionPositions", func(t *testing.T) { testSubscriptionPositions(t, open(t)) })
	t.Run("KnowledgeStamps", func(t *testing.T) { testKnowledgeStamps(t, open(t)) })
	t.Run("StableAsOf", func(t *testing.T) { testStableAsOf(t, open(t)) })
	t.Run("ScanEvents", func(t *testing.T) { testScanEvents(t, open(t)) })
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := abacus.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func seedTenant(t *testing.T, s abacus.Store, id string) {
	t.Helper()
	must(t, s.CreateTenant(context.Background(), &abacus.Tenant{ID: id, Name: id, CreatedAt: t0}))
}

func testTenants(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	must(t, s.Ready(ctx))
	tn := &abacus.Tenant{ID: "acme", Name: "Acme", Settings: abacus.TenantSettings{BackdateWindow: 48 * time.Hour}, CreatedAt: t0}
	must(t, s.CreateTenant(ctx, tn))
	wantCode(t, s.CreateTenant(ctx, tn), abacus.ECONFLICT)
	got, err := s.FindTenant(ctx, "acme")
	must(t, err)
	if got.Name != "Acme" || got.Settings.BackdateWindow != 48*time.Hour || !got.CreatedAt.Equal(t0) {
		t.Fatalf("tenant = %+v", got)
	}
	_, err = s.FindTenant(ctx, "nope")
	wantCode(t, err, abacus.ENOTFOUND)
	must(t, s.UpdateTenantSettings(ctx, "acme", abacus.TenantSettings{BackdateWindow: 72 * time.Hour, FutureSkew: time.Minute}))
	got, err = s.FindTenant(ctx, "acme")
	must(t, err)
	if got.Settings.BackdateWindow != 72*time.Hour || got.Settings.FutureSkew != time.Minute || got.Name != "Acme" {
		t.Fatalf("updated tenant = %+v", got)
	}
	wantCode(t, s.UpdateTenantSettings(ctx, "nope", abacus.TenantSettings{}), abacus.ENOTFOUND)
}

func testAPIKeys(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	k := &abacus.APIKey{ID: "k1", TenantID: "acme", Name: "ingest", Scopes: []abacus.Scope{abacus.ScopeIngest, abacus.ScopeRead}, Prefix: "abk_x", Hash: []byte("0123456789abcdef0123456789abcdef"), CreatedAt: t0}
	must(t, s.CreateAPIKey(ctx, k))
	wantCode(t, s.CreateAPIKey(ctx, k), abacus.ECONFLICT)
	got, err := s.FindAPIKey(ctx, k.Hash)
	must(t, err)
	if got.ID != "k1" || got.TenantID != "acme" || len(got.Scopes) != 2 || !got.Allows(abacus.ScopeIngest) || got.Allows(abacus.ScopeAdmin) {
		t.Fatalf("key = %+v", got)
	}
	_, err = s.FindAPIKey(ctx, []byte("other"))
	wantCode(t, err, abacus.ENOTFOUND)
	keys, err := s.ListAPIKeys(ctx, "acme")
	must(t, err)
	if len(keys) != 1 || keys[0].ID != "k1" {
		t.Fatalf("keys = %+v", keys)
	}
}

func testCustomers(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	for _, id := range []string{"c-2", "c-1", "c-3"} {
		must(t, s.CreateCustomer(ctx, &abacus.Customer{TenantID: "acme", ID: id, Name: "N " + id, Currency: "EUR", TimeZone: "Europe/Berlin", Metadata: map[string]string{"tier": "gold"}, CreatedAt: t0}))
	}
	wantCode(t, s.CreateCustomer(ctx, &abacus.Customer{TenantID: "acme", ID: "c-1", TimeZone: "UTC", CreatedAt: t0}), abacus.ECONFLICT)
	c, err := s.FindCustomer(ctx, "acme", "c-2")
	must(t, err)
	if c.Name != "N c-2" || c.Currency != "EUR" || c.TimeZone != "Europe/Berlin" || c.Metadata["tier"] != "gold" {
		t.Fatalf("customer = %+v", c)
	}
	_, err = s.FindCustomer(ctx, "acme", "c-9")
	wantCode(t, err, abacus.ENOTFOUND)
	page, err := s.ListCustomers(ctx, "acme", "c-1", 1)
	must(t, err)
	if len(page) != 1 || page[0].ID != "c-2" {
		t.Fatalf("page = %+v", page)
	}
}

func testMeters(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	var v0 int64
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) (err error) { v0, err = tx.MetersVersion(ctx); return }))
	m := &abacus.Meter{TenantID: "acme", Key: "tokens", EventType: "llm", Aggregation: abacus.AggSum, Value: "$.tokens",
		GroupBy: map[string]string{"model": "$.model"}, Filter: []abacus.MeterFilter{{Path: "$.ok", Op: "exists"}}, CreatedAt: t0}
	must(t, s.CreateMeter(ctx, m))
	wantCode(t, s.CreateMeter(ctx, m), abacus.ECONFLICT)
	got, err := s.FindMeter(ctx, "acme", "tokens")
	must(t, err)
	if got.EventType != "llm" || got.Aggregation != abacus.AggSum || got.Value != "$.tokens" || got.GroupBy["model"] != "$.model" || len(got.Filter) != 1 {
		t.Fatalf("meter = %+v", got)
	}
	got, err = s.RenameMeter(ctx, "acme", "tokens", "Tokens", "LLM tokens")
	must(t, err)
	if got.Name != "Tokens" || got.Description != "LLM tokens" || got.Aggregation != abacus.AggSum {
		t.Fatalf("renamed = %+v", got)
	}
	_, err = s.RenameMeter(ctx, "acme", "nope", "", "")
	wantCode(t, err, abacus.ENOTFOUND)
	var v1 int64
	var all []*abacus.Meter
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) (err error) {
		if v1, err = tx.MetersVersion(ctx); err != nil {
			return err
		}
		all, err = tx.AllMeters(ctx)
		return err
	}))
	if v1 == v0 || len(all) != 1 {
		t.Fatalf("meters version %d → %d, all = %d", v0, v1, len(all))
	}
	list, err := s.ListMeters(ctx, "acme")
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("list = %d", len(list))
	}
}

// insertEvents stamps tx (at t0, unless a barrier is later) and inserts
// events, as the aggregator does.
func insertEvents(ctx context.Context, tx abacus.ApplyTx, events []abacus.AppliedEvent) ([]abacus.InsertResult, error) {
	if _, err := tx.Stamp(ctx, func() time.Time { return t0 }); err != nil {
		return nil, err
	}
	return tx.InsertEvents(ctx, events)
}

func event(tenant, id string, seq uint64, props string) abacus.AppliedEvent {
	e := abacus.AppliedEvent{
		Event: abacus.Event{TenantID: tenant, ID: id, Type: "llm", Customer: "c-1", Time: t0, TimeGiven: true,
			IngestTime: t0.Add(time.Second), Properties: []byte(props)},
		Partition: 3, Sequence: seq,
		Counted: []abacus.Counted{{Meter: "tokens", Group: `{"model":"m"}`}},
	}
	e.Hash = e.PayloadHash()
	return e
}

func testApplyDedup(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	first := []abacus.AppliedEvent{event("acme", "e1", 10, `{"tokens":5}`), event("acme", "e2", 10, `{"tokens":7}`)}
	var res []abacus.InsertResult
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) (err error) {
		if res, err = insertEvents(ctx, tx, first); err != nil {
			return err
		}
		return tx.SetPosition(ctx, 3, 10)
	}))
	if !res[0].Inserted || !res[1].Inserted {
		t.Fatalf("first insert = %+v", res)
	}
	again := []abacus.AppliedEvent{event("acme", "e1", 11, `{"tokens":5}`), event("acme", "e2", 11, `{"tokens":8}`), event("acme", "e3", 11, `{}`)}
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) (err error) {
		if res, err = insertEvents(ctx, tx, again); err != nil {
			return err
		}
		if err := tx.RecordRepeats(ctx, []abacus.Repeat{
			{TenantID: "acme", EventID: "e1", Hash: again[0].Hash, Partition: 3, Sequence: 11, SeenAt: t0},
			{TenantID: "acme", EventID: "e2", Conflict: true, Hash: again[1].Hash, Partition: 3, Sequence: 11, SeenAt: t0},
		}); err != nil {
			return err
		}
		return tx.SetPosition(ctx, 3, 11)
	}))
	if res[0].Inserted || res[0].ExistingHash != first[0].Hash {
		t.Fatalf("e1 again = %+v", res[0])
	}
	if res[1].Inserted || res[1].ExistingHash != first[1].Hash || res[1].ExistingHash == again[1].Hash {
		t.Fatalf("e2 again = %+v", res[1])
	}
	if !res[2].Inserted {
		t.Fatalf("e3 = %+v", res[2])
	}
	pos, err := s.Positions(ctx)
	must(t, err)
	if len(pos) != 1 || pos[3] != 11 {
		t.Fatalf("positions = %v", pos)
	}
	e1, err := s.FindEvent(ctx, "acme", "e1")
	must(t, err)
	if e1.Status() != abacus.StatusDuplicate || e1.Duplicates != 1 || e1.Sequence != 10 || e1.Partition != 3 ||
		string(e1.Properties) != `{"tokens":5}` || !e1.Time.Equal(t0) || !e1.TimeGiven || len(e1.Counted) != 1 || e1.Counted[0].Group != `{"model":"m"}` {
		t.Fatalf("e1 = %+v", e1)
	}
	e2, err := s.FindEvent(ctx, "acme", "e2")
	must(t, err)
	if e2.Status() != abacus.StatusConflict || len(e2.Conflicts) != 1 || e2.Conflicts[0].Hash != again[1].Hash || string(e2.Properties) != `{"tokens":7}` {
		t.Fatalf("e2 = %+v", e2)
	}
	e3, err := s.FindEvent(ctx, "acme", "e3")
	must(t, err)
	if e3.Status() != abacus.StatusAccepted {
		t.Fatalf("e3 status = %s", e3.Status())
	}
	_, err = s.FindEvent(ctx, "other", "e1")
	wantCode(t, err, abacus.ENOTFOUND)

	// Repeats of one id in one call all count; a second conflict is kept.
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) error {
		return tx.RecordRepeats(ctx, []abacus.Repeat{
			{TenantID: "acme", EventID: "e1", Hash: first[0].Hash, Partition: 3, Sequence: 12, SeenAt: t0},
			{TenantID: "acme", EventID: "e2", Conflict: true, Hash: again[2].Hash, Partition: 3, Sequence: 12, SeenAt: t0},
			{TenantID: "acme", EventID: "e1", Hash: first[0].Hash, Partition: 3, Sequence: 12, SeenAt: t0},
		})
	}))
	e1, err = s.FindEvent(ctx, "acme", "e1")
	must(t, err)
	e2, err = s.FindEvent(ctx, "acme", "e2")
	must(t, err)
	if e1.Duplicates != 3 || e2.Duplicates != 2 || len(e2.Conflicts) != 2 {
		t.Fatalf("after three more repeats: e1 duplicates %d, e2 duplicates %d with %d conflicts", e1.Duplicates, e2.Duplicates, len(e2.Conflicts))
	}
}

// testCountedLists: FindEvent returns each event's counted list as it was
// stored, whether the list was shared in its batch, known from an earlier
// one, seen once, empty, or inserted by a transaction that rolled back
// (a store whose cache held the list's id from that transaction would
// point events at a row that is not there, or at another list), or too
// long for an index entry.
func testCountedLists(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	a := []abacus.Counted{{Meter: "events"}, {Meter: "tokens", Group: `{"model":"m"}`}}
	b := []abacus.Counted{{Meter: "events"}, {Meter: "tokens", Group: `{"model":"n"}`}}
	c := []abacus.Counted{{Meter: "latency", Group: `{"region":"eu"}`}}
	d := []abacus.Counted{{Meter: "tokens", Group: `{"request":"r-\"1\""}`}}
	// ~3.5 kB that do not compress: over PostgreSQL's limit for a unique
	// index entry.
	var long []abacus.Counted
	rng := rand.New(rand.NewPCG(1, 2))
	for m := range 8 {
		user := make([]byte, 400)
		for i := range user {
			user[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[rng.IntN(36)]
		}
		long = append(long, abacus.Counted{Meter: fmt.Sprint("meter-", m), Group: `{"user":"` + string(user) + `"}`})
	}
	with := func(id string, seq uint64, counted []abacus.Counted) abacus.AppliedEvent {
		e := event("acme", id, seq, `{}`)
		e.Counted = counted
		if counted == nil {
			e.Skipped = []abacus.Skipped{{Meter: "tokens", Reason: "no value at $.tokens"}}
		}
		return e
	}
	apply := func(events ...abacus.AppliedEvent) error {
		return s.Apply(ctx, func(tx abacus.ApplyTx) error {
			_, err := insertEvents(ctx, tx, events)
			return err
		})
	}
	want := map[string][]abacus.Counted{}
	stored := func(events ...abacus.AppliedEvent) {
		t.Helper()
		must(t, apply(events...))
		for _, e := range events {
			want[e.ID] = e.Counted
		}
	}
	stored(with("a1", 1, a), with("a2", 1, a), with("a3", 1, a), with("b1", 1, b), with("n1", 1, nil), with("n2", 1, nil))
	boom := errors.New("boom")
	err := s.Apply(ctx, func(tx abacus.ApplyTx) error {
		if _, err := insertEvents(ctx, tx, []abacus.AppliedEvent{with("c1", 2, c), with("c2", 2, c)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("apply err = %v", err)
	}
	stored(with("c1", 3, c), with("c2", 3, c), with("b2", 3, b), with("a4", 3, a), with("d1", 3, d))
	stored(with("c3", 4, c), with("d2", 4, d), with("d3", 4, d), with("l1", 4, long), with("l2", 4, long))
	// Lists given encoded (AppliedEvent.CountedJSON, as the aggregator
	// gives them), alone and beside the same list given only as Counted.
	given := func(id string, seq uint64, counted []abacus.Counted) abacus.AppliedEvent {
		e := with(id, seq, counted)
		e.CountedJSON = string(jsonenc.Counted(nil, counted))
		return e
	}
	e := []abacus.Counted{{Meter: "events"}, {Meter: "tokens", Group: `{"model":"given"}`}}
	stored(given("a5", 5, a), with("a6", 5, a), given("e1", 5, e), given("e2", 5, e), given("n3", 5, nil), given("l3", 5, long))
	for id, counted := range want {
		e, err := s.FindEvent(ctx, "acme", id)
		must(t, err)
		if got, w := fmt.Sprintf("%+v", e.Counted), fmt.Sprintf("%+v", counted); got != w || len(e.Counted) != len(counted) {
			t.Errorf("%s counted = %s, want %s", id, got, w)
		}
	}
}

// testApplyDedupMany: an insert of more events than one statement takes
// says exactly which it stored, with repeats of stored events (same
// payload, and another payload) at the start, the middle and the end of
// its statements, and none at all in others. (The ids of one call are
// distinct: abacus.ApplyTx.InsertEvents.)
func testApplyDedupMany(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	var first []abacus.AppliedEvent
	for i := range 300 {
		first = append(first, event("acme", fmt.Sprint("f", i), 1, fmt.Sprintf(`{"tokens":%d}`, i)))
	}
	var res []abacus.InsertResult
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) (err error) {
		res, err = insertEvents(ctx, tx, first)
		return err
	}))
	for i, r := range res {
		if !r.Inserted {
			t.Fatalf("first insert: event %d not stored", i)
		}
	}
	// 600 events: new ones, except where repeat says otherwise.
	repeat := map[int]int{0: 0, 127: 1, 128: 299, 200: 150, 255: 255, 256: 7, 599: 42} // index → stored f<k>
	conflict := map[int]bool{128: true, 599: true}                                     // another payload
	var again []abacus.AppliedEvent
	for i := range 600 {
		e := event("acme", fmt.Sprint("g", i), 2, fmt.Sprintf(`{"tokens":%d}`, 1000+i))
		if k, ok := repeat[i]; ok {
			e = first[k]
			e.Sequence = 2
			if conflict[i] {
				e = event("acme", first[k].ID, 2, `{"tokens":-1}`)
			}
		}
		again = append(again, e)
	}
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) (err error) {
		res, err = insertEvents(ctx, tx, again)
		return err
	}))
	for i, r := range res {
		if _, rep := repeat[i]; r.Inserted == rep {
			t.Errorf("event %d (%s): stored %v", i, again[i].ID, r.Inserted)
		}
		if k, ok := repeat[i]; ok && r.ExistingHash != first[k].Hash {
			t.Errorf("event %d repeats %s: existing hash %x, want %x", i, first[k].ID, r.ExistingHash, first[k].Hash)
		}
	}
	for _, id := range []string{"g1", "g129", "g300", "g598"} {
		if _, err := s.FindEvent(ctx, "acme", id); err != nil {
			t.Errorf("find %s: %v", id, err)
		}
	}
	// Two inserts in one transaction, the second repeating every event of
	// the first: a statement of only repeats, then one of a single repeat.
	var third []abacus.AppliedEvent
	for i := range 129 {
		third = append(third, event("acme", fmt.Sprint("h", i), 3, `{"tokens":1}`))
	}
	var res1, res2 []abacus.InsertResult
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) (err error) {
		if res1, err = insertEvents(ctx, tx, third); err != nil {
			return err
		}
		res2, err = tx.InsertEvents(ctx, third)
		return err
	}))
	for i := range third {
		if !res1[i].Inserted || res2[i].Inserted || res2[i].ExistingHash != third[i].Hash {
			t.Errorf("h%d: first insert %+v, second %+v", i, res1[i], res2[i])
		}
	}
}

// testApplyRollback: a failed apply leaves nothing behind, so that the
// redelivered batch applies as if for the first time.
func testApplyRollback(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	boom := errors.New("boom")
	err := s.Apply(ctx, func(tx abacus.ApplyTx) error {
		if _, err := insertEvents(ctx, tx, []abacus.AppliedEvent{event("acme", "e1", 1, `{}`)}); err != nil {
			return err
		}
		if err := tx.AddRollups(ctx, []abacus.RollupDelta{delta("acme", "c-1", 100, 1, "5")}); err != nil {
			return err
		}
		if err := tx.SetPosition(ctx, 0, 1); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("apply err = %v", err)
	}
	_, err = s.FindEvent(ctx, "acme", "e1")
	wantCode(t, err, abacus.ENOTFOUND)
	pos, err := s.Positions(ctx)
	must(t, err)
	if len(pos) != 0 {
		t.Fatalf("positions after rollback = %v", pos)
	}
	if rows := scan(t, s, abacus.RollupFilter{TenantID: "acme", Meter: "tokens", FromMinute: 0, ToMinute: 1 << 40}); len(rows) != 0 {
		t.Fatalf("rollups after rollback = %v", rows)
	}

	// A rolled-back merge must not leak into later ones (stores may cache
	// rows): committed 5, rolled-back 7, committed 1 → 6 over 2 events.
	add := func(v string, fail bool) error {
		return s.Apply(ctx, func(tx abacus.ApplyTx) error {
			if err := tx.AddRollups(ctx, []abacus.RollupDelta{delta("acme", "c-1", 100, 1, v)}); err != nil {
				return err
			}
			if fail {
				return boom
			}
			return nil
		})
	}
	must(t, add("5", false))
	if err := add("7", true); !errors.Is(err, boom) {
		t.Fatalf("apply err = %v", err)
	}
	must(t, add("1", false))
	rows := scan(t, s, abacus.RollupFilter{TenantID: "acme", Meter: "tokens", FromMinute: 0, ToMinute: 1 << 40})
	if len(rows) != 1 || !strings.Contains(rows[0], " n=2 sum=6 min=1 max=5 ") {
		t.Fatalf("rollups after commit, rollback, commit = %q", rows)
	}
}

func dec(s string) apd.Decimal {
	var d apd.Decimal
	if _, _, err := d.SetString(s); err != nil {
		panic(err)
	}
	return d
}

func delta(tenant, customer string, minute int64, count int64, value string) abacus.RollupDelta {
	v := dec(value)
	return abacus.RollupDelta{
		RollupKey: abacus.RollupKey{TenantID: tenant, Meter: "tokens", Customer: customer, Group: `{"model":"m"}`, Minute: minute},
		Count:     count, HasValue: true, Sum: v, Min: v, Max: v, Latest: v,
		LatestTime: minute*60e9 + count, LatestID: fmt.Sprint("e", count),
	}
}

func scan(t *testing.T, s abacus.Store, f abacus.RollupFilter) []string {
	t.Helper()
	var out []string
	must(t, s.ScanRollups(context.Background(), f, func(r *abacus.RollupRow) error {
		out = append(out, fmt.Sprintf("%s %d %s n=%d sum=%s min=%s max=%s latest=%s@%d/%s", r.Customer, r.Minute, r.Group, r.Count,
			r.Sum.Text('f'), r.Min.Text('f'), r.Max.Text('f'), r.Latest.Text('f'), r.LatestTime, r.LatestID))
		return nil
	}))
	sort.Strings(out)
	return out
}

func testRollups(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	add := func(ds ...abacus.RollupDelta) {
		must(t, s.Apply(ctx, func(tx abacus.ApplyTx) error { return tx.AddRollups(ctx, ds) }))
	}
	add(delta("acme", "c-1", 100, 1, "0.000000000001"), delta("acme", "c-2", 100, 1, "7"))
	add(delta("acme", "c-1", 100, 2, "12345678901234567890.5"))
	add(delta("acme", "c-1", 101, 1, "-3"))
	// A count-only delta (no value) keeps min/max/latest.
	add(abacus.RollupDelta{RollupKey: abacus.RollupKey{TenantID: "acme", Meter: "tokens", Customer: "c-2", Group: `{"model":"m"}`, Minute: 100}, Count: 4})
	got := scan(t, s, abacus.RollupFilter{TenantID: "acme", Meter: "tokens", FromMinute: 100, ToMinute: 102})
	want := []string{
		`c-1 100 {"model":"m"} n=3 sum=12345678901234567890.500000000001 min=0.000000000001 max=12345678901234567890.5 latest=12345678901234567890.5@6000000000002/e2`,
		`c-1 101 {"model":"m"} n=1 sum=-3 min=-3 max=-3 latest=-3@6060000000001/e1`,
		`c-2 100 {"model":"m"} n=5 sum=7 min=7 max=7 latest=7@6000000000001/e1`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rollups:\n got %q\nwant %q", got, want)
	}
	got = scan(t, s, abacus.RollupFilter{TenantID: "acme", Meter: "tokens", Customer: "c-1", FromMinute: 101, ToMinute: 200})
	if len(got) != 1 || got[0] != want[1] {
		t.Fatalf("filtered = %q", got)
	}
	if got := scan(t, s, abacus.RollupFilter{TenantID: "acme", Meter: "other", FromMinute: 0, ToMinute: 1000}); len(got) != 0 {
		t.Fatalf("other meter = %q", got)
	}
}

func testUniques(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	u := func(customer string, minute int64, v string) abacus.UniqueValue {
		return abacus.UniqueValue{RollupKey: abacus.RollupKey{TenantID: "acme", Meter: "users", Customer: customer, Group: "{}", Minute: minute}, Value: v}
	}
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) error {
		return tx.AddUniques(ctx, []abacus.UniqueValue{u("c-1", 5, "a"), u("c-1", 5, "b"), u("c-1", 6, "a"), u("c-2", 5, "a")})
	}))
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) error {
		return tx.AddUniques(ctx, []abacus.UniqueValue{u("c-1", 5, "a")}) // already there: ignored
	}))
	var got []string
	must(t, s.ScanUniques(ctx, abacus.RollupFilter{TenantID: "acme", Meter: "users", Customer: "c-1", FromMinute: 0, ToMinute: 10}, func(u *abacus.UniqueValue) error {
		got = append(got, fmt.Sprint(u.Customer, u.Minute, u.Group, u.Value))
		return nil
	}))
	sort.Strings(got)
	if want := "[c-15{}a c-15{}b c-16{}a]"; fmt.Sprint(got) != want {
		t.Fatalf("uniques = %v, want %s", got, want)
	}
}

func testTenantIsolation(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "a")
	seedTenant(t, s, "b")
	must(t, s.CreateCustomer(ctx, &abacus.Customer{TenantID: "a", ID: "c-1", TimeZone: "UTC", CreatedAt: t0}))
	must(t, s.CreateCustomer(ctx, &abacus.Customer{TenantID: "b", ID: "c-1", TimeZone: "UTC", CreatedAt: t0}))
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) error {
		res, err := insertEvents(ctx, tx, []abacus.AppliedEvent{event("a", "e1", 1, `{}`), event("b", "e1", 1, `{}`)})
		if err == nil && !(res[0].Inserted && res[1].Inserted) {
			err = fmt.Errorf("same id in two tenants must both insert: %+v", res)
		}
		if err != nil {
			return err
		}
		return tx.AddRollups(ctx, []abacus.RollupDelta{delta("a", "c-1", 1, 1, "1"), delta("b", "c-1", 1, 1, "2")})
	}))
	if got := scan(t, s, abacus.RollupFilter{TenantID: "b", Meter: "tokens", FromMinute: 0, ToMinute: 10}); len(got) != 1 || got[0][len(got[0])-len("latest=2@60000000001/e1"):] != "latest=2@60000000001/e1" {
		t.Fatalf("tenant b rollups = %q", got)
	}
	cs, err := s.ListCustomers(ctx, "b", "", 10)
	must(t, err)
	if len(cs) != 1 {
		t.Fatalf("tenant b customers = %d", len(cs))
	}
}
