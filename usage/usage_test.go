package usage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/aggregate"
	"github.com/abacus-billing/abacus/jetstream"
	"github.com/abacus-billing/abacus/postgres"
	"github.com/abacus-billing/abacus/sqlite"
	"github.com/abacus-billing/abacus/usage"
)

var stores = map[string]func(t *testing.T) abacus.Store{
	"sqlite": func(t *testing.T) abacus.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "abacus.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
	"postgres": func(t *testing.T) abacus.Store { return postgres.OpenTestStore(t) },
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// world is a store fed by a real aggregator from an embedded log.
type world struct {
	t     *testing.T
	ctx   context.Context
	store abacus.Store
	log   *jetstream.Log
	agg   *aggregate.Aggregator
	clock *clock
}

func newWorld(t *testing.T, s abacus.Store, meters []*abacus.Meter) *world {
	ctx := context.Background()
	w := &world{t: t, ctx: ctx, store: s, clock: &clock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}}
	must(t, s.CreateTenant(ctx, &abacus.Tenant{ID: "acme", Name: "Acme", CreatedAt: w.clock.Now()}))
	for _, c := range []string{"c-1", "c-2", "c-3"} {
		must(t, s.CreateCustomer(ctx, &abacus.Customer{TenantID: "acme", ID: c, TimeZone: "UTC", CreatedAt: w.clock.Now()}))
	}
	for _, m := range meters {
		must(t, s.CreateMeter(ctx, m))
	}
	var err error
	w.log, err = jetstream.Open(ctx, jetstream.Config{Dir: t.TempDir(), Durability: jetstream.Relaxed, Partitions: 2})
	must(t, err)
	t.Cleanup(func() { w.log.Close() })
	w.agg = aggregate.New(aggregate.Config{Log: w.log, Store: s, Clock: w.clock})
	must(t, w.agg.Start(ctx))
	t.Cleanup(w.agg.Stop)
	return w
}

// send appends events, a few per log message, and waits until they are
// applied.
func (w *world) send(events []abacus.Event) {
	w.t.Helper()
	want := map[int]uint64{}
	for start := 0; start < len(events); start += 7 {
		batch := events[start:min(start+7, len(events))]
		byPart := map[int][]byte{}
		counts := map[int]int{}
		for i := range batch {
			p := abacus.Partition(batch[i].TenantID, batch[i].Customer, w.log.Partitions())
			byPart[p] = abacus.AppendRecord(byPart[p], &batch[i])
			counts[p]++
		}
		for p, recs := range byPart {
			seq, err := w.log.Append(w.ctx, p, append(abacus.AppendMessage(nil, counts[p]), recs...))
			must(w.t, err)
			want[p] = max(want[p], seq)
		}
	}
	ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
	defer cancel()
	must(w.t, w.agg.WaitApplied(ctx, want))
}

// randomEvents makes n events of three customers over six hours after
// base: values as numbers and numeric strings (trailing zeros, negatives,
// 12 fractional digits), some invalid or missing, repeated event times
// (ties for latest), minute boundaries, regions or none, another event
// type, and resends of earlier ids with the same or another payload.
func randomEvents(rng *rand.Rand, base time.Time, n int, prefix string, earlier []abacus.Event) []abacus.Event {
	values := []any{1, 2.5, "2.50", -3, "0.000000000001", 1000000, "abc", nil, 7, "7.0", 0}
	regions := []any{"eu", "us", nil, 42}
	out := make([]abacus.Event, 0, n)
	for i := range n {
		if len(earlier) > 0 && rng.IntN(10) == 0 {
			e := earlier[rng.IntN(len(earlier))]
			if rng.IntN(2) == 0 {
				e.Properties = []byte(`{"v":999,"user":"zz","region":"eu","ok":true}`) // a conflict: the first wins
			}
			out = append(out, e)
			continue
		}
		props := map[string]any{"user": fmt.Sprint("u", rng.IntN(6))}
		if v := values[rng.IntN(len(values))]; v != nil {
			props["v"] = v
		}
		if r := regions[rng.IntN(len(regions))]; r != nil {
			props["region"] = r
		}
		if rng.IntN(3) > 0 {
			props["ok"] = true
		}
		b, _ := json.Marshal(props)
		typ := "req"
		if rng.IntN(10) == 0 {
			typ = "other"
		}
		// A few distinct instants per minute, so that latest has ties
		// decided by id; some exactly on the minute.
		at := base.Add(time.Duration(rng.IntN(360))*time.Minute + time.Duration(rng.IntN(3))*20*time.Second)
		out = append(out, abacus.Event{TenantID: "acme", ID: fmt.Sprintf("%s-%03d", prefix, i), Type: typ,
			Customer: fmt.Sprint("c-", 1+rng.IntN(3)), Time: at, TimeGiven: true, IngestTime: base, Properties: b})
	}
	return out
}

func meters() []*abacus.Meter {
	var ms []*abacus.Meter
	for _, agg := range abacus.Aggregations {
		m := &abacus.Meter{TenantID: "acme", Key: "m-" + string(agg), EventType: "req", Aggregation: agg, Value: "$.v",
			GroupBy: map[string]string{"region": "$.region"}}
		switch agg {
		case abacus.AggCount:
			m.Value = ""
		case abacus.AggUniqueCount:
			m.Value = "$.user"
		}
		ms = append(ms, m)
	}
	ms = append(ms, &abacus.Meter{TenantID: "acme", Key: "f-sum", EventType: "req", Aggregation: abacus.AggSum, Value: "$.v",
		GroupBy: map[string]string{"region": "$.region"},
		Filter:  []abacus.MeterFilter{{Path: "$.ok", Op: "exists"}, {Path: "$.region", Op: "in", Values: []json.RawMessage{[]byte(`"eu"`), []byte(`42`)}}}})
	return ms
}

// queries is every combination the test compares: each meter, customer,
// window, time zone, grouping and filter.
func queries(from, to time.Time) []usage.Query {
	var qs []usage.Query
	for _, m := range meters() {
		for _, c := range []string{"c-1", "c-2", "c-3"} {
			for _, window := range []string{usage.WindowNone, usage.WindowHour, usage.WindowDay} {
				for _, tz := range []string{"UTC", "Asia/Kolkata"} {
					for _, g := range []struct {
						groupBy []string
						filter  map[string][]string
					}{{nil, nil}, {[]string{"region"}, nil}, {[]string{"customer", "region"}, nil}, {[]string{"region"}, map[string][]string{"region": {"eu"}}}} {
						qs = append(qs, usage.Query{TenantID: "acme", Meter: m.Key, Customer: c, From: from, To: to,
							Window: window, TimeZone: tz, GroupBy: g.groupBy, Filter: g.filter})
					}
				}
			}
		}
	}
	return qs
}

func run(t *testing.T, w *world, q usage.Query, asOf *time.Time) string {
	t.Helper()
	q.AsOf, q.Clock = asOf, w.clock
	res, err := usage.Run(w.ctx, w.store, q)
	if err != nil {
		t.Fatalf("%+v: %v", q, err)
	}
	b, _ := json.Marshal(res.Rows)
	return string(b)
}

func key(q usage.Query) string {
	return fmt.Sprintf("%s %s %s %s group_by=%v filter=%v", q.Meter, q.Customer, q.Window, q.TimeZone, q.GroupBy, q.Filter)
}

// TestAsOf feeds random events through the real aggregator in two rounds
// with a barrier between them, on a clock that stands still. Then, for
// every aggregation, window, time zone, grouping and filter:
//   - as of the far future equals the rollup path now, exactly;
//   - as of the barrier equals the rollup path as it was at the barrier:
//     the second round, applied later (also events late for minutes the
//     first round filled), is excluded exactly.
func TestAsOf(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			meters := meters()
			w := newWorld(t, open(t), meters)
			rng := rand.New(rand.NewPCG(7, 11))
			base := time.Date(2026, 4, 30, 18, 0, 0, 0, time.UTC)
			from, to := base.Add(-time.Hour), base.Add(7*time.Hour)
			first := randomEvents(rng, base, 150, "a", nil)
			w.send(first)
			k, err := w.store.Barrier(w.ctx, w.clock.Now)
			must(t, err)
			qs := queries(from, to)
			atBarrier := make([]string, len(qs))
			for i, q := range qs {
				atBarrier[i] = run(t, w, q, nil)
			}
			w.send(randomEvents(rng, base, 150, "b", first))

			far := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
			changed := 0
			for i, q := range qs {
				now := run(t, w, q, nil)
				if got := run(t, w, q, &far); got != now {
					t.Fatalf("%s as of the far future:\n got %s\nwant %s (rollups)", key(q), got, now)
				}
				if got := run(t, w, q, &k); got != atBarrier[i] {
					t.Fatalf("%s as of the barrier:\n got %s\nwant %s (rollups at the barrier)", key(q), got, atBarrier[i])
				}
				if now != atBarrier[i] {
					changed++
				}
			}
			if changed < len(qs)/2 {
				t.Fatalf("the second round changed only %d of %d answers: the test proves little", changed, len(qs))
			}
		})
	}
}

// TestAsOfResult: the result says which knowledge instant it reflects, a
// read later than every barrier takes one, and as_of needs a customer.
func TestAsOfResult(t *testing.T) {
	w := newWorld(t, stores["sqlite"](t), meters())
	base := time.Date(2026, 4, 30, 18, 0, 0, 0, time.UTC)
	w.send([]abacus.Event{{TenantID: "acme", ID: "e1", Type: "req", Customer: "c-1", Time: base, TimeGiven: true, IngestTime: base, Properties: []byte(`{"v":2}`)}})
	q := usage.Query{TenantID: "acme", Meter: "m-sum", Customer: "c-1", From: base, To: base.Add(time.Hour), Clock: w.clock}

	res, err := usage.Run(w.ctx, w.store, q)
	must(t, err)
	if res.AsOf != nil {
		t.Fatalf("as_of of a read without one = %v", res.AsOf)
	}
	// The event is stamped at the clock. As of an instant before that it
	// is unknown; no barrier was taken yet, so the read takes one (at the
	// clock) before it reads.
	now := w.clock.Now()
	before := now.Add(-time.Nanosecond)
	q.AsOf = &before
	res, err = usage.Run(w.ctx, w.store, q)
	must(t, err)
	if len(res.Rows) != 0 || res.AsOf == nil || !res.AsOf.Equal(before) {
		t.Fatalf("as of before the event: rows %+v, as_of %v", res.Rows, res.AsOf)
	}
	if mark, err := w.store.LastBarrier(w.ctx); err != nil || !mark.Equal(now) {
		t.Fatalf("last barrier after the first as-of read = %v, %v; want the clock %v", mark, err, now)
	}
	// The same read again needs no barrier.
	res, err = usage.Run(w.ctx, w.store, q)
	must(t, err)
	if mark, err := w.store.LastBarrier(w.ctx); err != nil || !mark.Equal(now) {
		t.Fatalf("last barrier after a read of the past = %v, %v; want it unchanged at %v", mark, err, now)
	}
	// Later than every barrier, and than the (frozen) clock: a new barrier
	// is taken, at mark+1, and the result is as of it.
	later := now.Add(time.Hour)
	q.AsOf = &later
	res, err = usage.Run(w.ctx, w.store, q)
	must(t, err)
	mark, err := w.store.LastBarrier(w.ctx)
	must(t, err)
	if len(res.Rows) != 1 || *res.Rows[0].Value != "2" || res.AsOf == nil || !res.AsOf.Equal(mark) || !mark.Equal(now.Add(1)) {
		t.Fatalf("as of the future: rows %+v, as_of %v, last barrier %v", res.Rows, res.AsOf, mark)
	}

	q.Customer = ""
	_, err = usage.Run(w.ctx, w.store, q)
	if abacus.ErrorCode(err) != abacus.EINVALID {
		t.Fatalf("as_of without a customer: %v", err)
	}
}
