package storetest

// Conformance tests of knowledge time (abacus.KnowledgeStore and the Stamp
// of apply and subscription transactions).

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
)

// frozen is a clock that stands still unless set: the case the mark+1 of
// the protocol exists for.
type frozen struct{ t time.Time }

func (c *frozen) now() time.Time { return c.t }

// ApplyStamped runs one apply transaction stamped with now, inserting
// events, and returns its stamp (read twice: a second Stamp must return the
// first). Stores' own tests use it too (their TestEventBlocks).
func ApplyStamped(t *testing.T, s abacus.Store, now func() time.Time, events ...abacus.AppliedEvent) time.Time {
	t.Helper()
	ctx := context.Background()
	var at time.Time
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) error {
		var err error
		if at, err = tx.Stamp(ctx, now); err != nil {
			return err
		}
		again, err := tx.Stamp(ctx, func() time.Time { return now().Add(time.Hour) })
		if err != nil {
			return err
		}
		if !again.Equal(at) {
			return fmt.Errorf("second Stamp = %v, first %v", again, at)
		}
		_, err = tx.InsertEvents(ctx, events)
		return err
	}))
	return at
}

// RawEvent is an event of type "llm" with empty properties, hashed, for
// tests of how stores keep raw events (their TestEventBlocks).
func RawEvent(tenant, id, customer string, at time.Time) abacus.AppliedEvent {
	e := abacus.AppliedEvent{Event: abacus.Event{TenantID: tenant, ID: id, Type: "llm", Customer: customer,
		Time: at, TimeGiven: true, IngestTime: at, Properties: []byte(`{}`)}}
	e.Hash = e.PayloadHash()
	return e
}

func barrier(t *testing.T, s abacus.Store, now func() time.Time) time.Time {
	t.Helper()
	k, err := s.Barrier(context.Background(), now)
	must(t, err)
	return k
}

func lastBarrier(t *testing.T, s abacus.Store) time.Time {
	t.Helper()
	k, err := s.LastBarrier(context.Background())
	must(t, err)
	return k
}

// knownIDs returns the ids ScanEvents yields for f, in its order.
func knownIDs(t *testing.T, s abacus.Store, f abacus.EventFilter) []string {
	t.Helper()
	ids := []string{}
	must(t, s.ScanEvents(context.Background(), f, func(e *abacus.Event) error {
		ids = append(ids, e.ID)
		return nil
	}))
	return ids
}

// testKnowledgeStamps: with a frozen clock, a stamp after a barrier is
// later than the barrier's K, rows stamped before it are at or before K,
// and barriers move strictly forward, also when the clock steps back.
func testKnowledgeStamps(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	clk := &frozen{t: t0.Add(123)}
	if got := lastBarrier(t, s); !got.Equal(time.Unix(0, 0)) {
		t.Fatalf("LastBarrier of a new store = %v, want the epoch", got)
	}

	s1 := ApplyStamped(t, s, clk.now, event("acme", "e1", 1, `{}`))
	if !s1.Equal(clk.t) || s1.Location() != time.UTC {
		t.Fatalf("first stamp = %v, want the clock %v in UTC", s1, clk.t)
	}
	k1 := barrier(t, s, clk.now)
	if k1.Before(s1) || k1.Location() != time.UTC {
		t.Fatalf("barrier K1 = %v before the stamp %v it follows", k1, s1)
	}
	if got := lastBarrier(t, s); !got.Equal(k1) {
		t.Fatalf("LastBarrier = %v, want K1 %v", got, k1)
	}
	s2 := ApplyStamped(t, s, clk.now, event("acme", "e2", 2, `{}`))
	if !s2.After(k1) {
		t.Fatalf("stamp after barrier K1 = %v, not after K1 %v (frozen clock)", s2, k1)
	}
	var sub time.Time
	inTx(t, s, func(ctx context.Context, tx abacus.SubscriptionTx) (err error) {
		sub, err = tx.Stamp(ctx, clk.now)
		return err
	})
	if !sub.After(k1) {
		t.Fatalf("subscription stamp after K1 = %v, not after K1 %v", sub, k1)
	}
	k2 := barrier(t, s, clk.now)
	if !k2.After(k1) || k2.Before(s2) || k2.Before(sub) {
		t.Fatalf("barrier K2 = %v: want after K1 %v and not before the stamps %v, %v", k2, k1, s2, sub)
	}

	// The clock steps back an hour: barriers and stamps still move on.
	clk.t = clk.t.Add(-time.Hour)
	k3 := barrier(t, s, clk.now)
	if !k3.After(k2) {
		t.Fatalf("barrier with the clock stepped back = %v, not after K2 %v", k3, k2)
	}
	s3 := ApplyStamped(t, s, clk.now, event("acme", "e3", 3, `{}`))
	if !s3.After(k3) {
		t.Fatalf("stamp with the clock stepped back = %v, not after K3 %v", s3, k3)
	}
	// And forward: the clock wins again.
	clk.t = clk.t.Add(48 * time.Hour)
	if k4 := barrier(t, s, clk.now); !k4.Equal(clk.t) {
		t.Fatalf("barrier with the clock ahead = %v, want the clock %v", k4, clk.t)
	}

	f := abacus.EventFilter{TenantID: "acme", Customer: "c-1"}
	for _, c := range []struct {
		known time.Time
		want  string
	}{{s1.Add(-1), "[]"}, {k1, "[e1]"}, {k2, "[e1 e2]"}, {k3, "[e1 e2]"}, {s3, "[e1 e2 e3]"}, {time.Time{}, "[e1 e2 e3]"}} {
		f.KnownBy = c.known
		if got := fmt.Sprint(knownIDs(t, s, f)); got != c.want {
			t.Errorf("events known by %v = %s, want %s", c.known, got, c.want)
		}
	}

	// An apply transaction that inserts events without a stamp fails, and
	// leaves nothing behind.
	err := s.Apply(ctx, func(tx abacus.ApplyTx) error {
		_, err := tx.InsertEvents(ctx, []abacus.AppliedEvent{event("acme", "e4", 4, `{}`)})
		return err
	})
	wantCode(t, err, abacus.EINTERNAL)
	if _, err := s.FindEvent(ctx, "acme", "e4"); abacus.ErrorCode(err) != abacus.ENOTFOUND {
		t.Fatalf("event of a failed unstamped insert: %v", err)
	}
}

// testStableAsOf: a read of the past up to the last barrier takes no new
// barrier; a later one takes one, and one later than that barrier reads
// at the barrier.
func testStableAsOf(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	clk := &frozen{t: t0}
	k1 := barrier(t, s, clk.now)
	clk.t = t0.Add(time.Minute)
	for _, c := range []struct {
		what       string
		asOf, want time.Time
		mark       time.Time // LastBarrier afterwards
	}{
		{"before the last barrier", t0.Add(-time.Hour), t0.Add(-time.Hour), k1},
		{"at the last barrier", k1, k1, k1},
		{"after the last barrier", t0.Add(30 * time.Second), t0.Add(30 * time.Second), t0.Add(time.Minute)},
		{"after a new barrier's K", t0.Add(time.Hour), t0.Add(time.Minute + 1), t0.Add(time.Minute + 1)},
	} {
		got, err := abacus.StableAsOf(ctx, s, c.asOf, clk.now)
		must(t, err)
		if !got.Equal(c.want) {
			t.Errorf("%s: StableAsOf(%v) = %v, want %v", c.what, c.asOf, got, c.want)
		}
		if m := lastBarrier(t, s); !m.Equal(c.mark) {
			t.Errorf("%s: last barrier = %v, want %v", c.what, m, c.mark)
		}
	}
}

// testScanEvents: ScanEvents selects by tenant, customer, type, event time
// [From, To) and knowledge stamp, in event time order then id, and returns
// the first-received event.
func testScanEvents(t *testing.T, s abacus.Store) {
	defer s.Close()
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "other")
	ev := func(tenant, id, typ, customer string, at time.Duration, props string) abacus.AppliedEvent {
		e := event(tenant, id, 7, props)
		e.Type, e.Customer, e.Time = typ, customer, t0.Add(at)
		e.Hash = e.PayloadHash()
		return e
	}
	clk := &frozen{t: t0.Add(time.Hour)}
	// Stamp 1: ids sort against their times so that the order is checked.
	ApplyStamped(t, s, clk.now,
		ev("acme", "e9", "llm", "c-1", 0, `{"n":1}`),
		ev("acme", "e2", "llm", "c-1", 2*time.Minute, `{"n":2}`),
		ev("acme", "e1", "llm", "c-1", 2*time.Minute, `{"n":3}`),
		ev("acme", "x1", "other", "c-1", time.Minute, `{}`),
		ev("acme", "y1", "llm", "c-2", time.Minute, `{}`),
		ev("other", "z1", "llm", "c-1", time.Minute, `{}`),
		// Around the Unix epoch: minutes of negative times round down.
		ev("acme", "n1", "llm", "c-old", time.Unix(0, -int64(time.Minute)-1).Sub(t0), `{}`),
		ev("acme", "n2", "llm", "c-old", time.Unix(0, -int64(time.Minute)).Sub(t0), `{}`),
		ev("acme", "n3", "llm", "c-old", time.Unix(0, -1).Sub(t0), `{}`),
		ev("acme", "n4", "llm", "c-old", time.Unix(0, 0).Sub(t0), `{}`))
	k := barrier(t, s, clk.now)
	// Stamp 2: after the barrier. A repeat of e9 with other properties is
	// not inserted: the first received stays.
	clk.t = clk.t.Add(time.Second)
	late := ev("acme", "e5", "llm", "c-1", time.Minute, `{"n":5}`)
	late.TimeGiven, late.IngestTime = false, t0.Add(time.Hour+time.Second)
	late.Hash = late.PayloadHash()
	ApplyStamped(t, s, clk.now, late, ev("acme", "e9", "llm", "c-1", 0, `{"n":99}`))

	f := func(mod func(*abacus.EventFilter)) abacus.EventFilter {
		f := abacus.EventFilter{TenantID: "acme", Customer: "c-1", Type: "llm"}
		mod(&f)
		return f
	}
	for _, c := range []struct {
		what string
		f    abacus.EventFilter
		want string
	}{
		{"all of c-1's llm events, by time then id", f(func(*abacus.EventFilter) {}), "[e9 e5 e1 e2]"},
		{"every type", f(func(f *abacus.EventFilter) { f.Type = "" }), "[e9 e5 x1 e1 e2]"},
		{"another customer", f(func(f *abacus.EventFilter) { f.Customer = "c-2" }), "[y1]"},
		{"another tenant", f(func(f *abacus.EventFilter) { f.TenantID = "other" }), "[z1]"},
		{"from is inclusive", f(func(f *abacus.EventFilter) { f.From = t0.Add(time.Minute) }), "[e5 e1 e2]"},
		{"to is exclusive", f(func(f *abacus.EventFilter) { f.To = t0.Add(2 * time.Minute) }), "[e9 e5]"},
		{"from and to", f(func(f *abacus.EventFilter) { f.From, f.To = t0.Add(1), t0.Add(2*time.Minute+1) }), "[e5 e1 e2]"},
		{"empty range", f(func(f *abacus.EventFilter) { f.From, f.To = t0.Add(time.Minute), t0.Add(time.Minute) }), "[]"},
		{"known by the barrier", f(func(f *abacus.EventFilter) { f.KnownBy = k }), "[e9 e1 e2]"},
		{"known before anything", f(func(f *abacus.EventFilter) { f.KnownBy = k.Add(-time.Hour) }), "[]"},
		{"unknown customer", f(func(f *abacus.EventFilter) { f.Customer = "c-9" }), "[]"},
		{"around the epoch", f(func(f *abacus.EventFilter) { f.Customer = "c-old" }), "[n1 n2 n3 n4]"},
		{"the minute before the epoch", f(func(f *abacus.EventFilter) {
			f.Customer, f.From, f.To = "c-old", time.Unix(0, -int64(time.Minute)), time.Unix(0, 0)
		}), "[n2 n3]"},
		{"a nanosecond either side", f(func(f *abacus.EventFilter) {
			f.Customer, f.From, f.To = "c-old", time.Unix(0, -int64(time.Minute)-1), time.Unix(0, 1)
		}), "[n1 n2 n3 n4]"},
	} {
		if got := fmt.Sprint(knownIDs(t, s, c.f)); got != c.want {
			t.Errorf("%s: ids = %s, want %s", c.what, got, c.want)
		}
	}

	// Fields come back as stored; the first received e9 wins.
	var got []abacus.Event
	must(t, s.ScanEvents(ctx, abacus.EventFilter{TenantID: "acme", Customer: "c-1", Type: "llm", To: t0.Add(2 * time.Minute)}, func(e *abacus.Event) error {
		c := *e
		c.Properties = append([]byte(nil), e.Properties...)
		got = append(got, c)
		return nil
	}))
	first := ev("acme", "e9", "llm", "c-1", 0, `{"n":1}`).Event
	same(t, "scanned events", got, []abacus.Event{first, late.Event})

	// Raw events are read one customer at a time.
	for _, bad := range []abacus.EventFilter{{TenantID: "acme"}, {Customer: "c-1"}} {
		err := s.ScanEvents(ctx, bad, func(*abacus.Event) error { return nil })
		wantCode(t, err, abacus.EINVALID)
	}
	// fn's error stops the scan and is returned.
	stop := fmt.Errorf("stop")
	n := 0
	err := s.ScanEvents(ctx, abacus.EventFilter{TenantID: "acme", Customer: "c-1"}, func(*abacus.Event) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("scan stopped by fn: err %v after %d events", err, n)
	}
}
