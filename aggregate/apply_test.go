package aggregate

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/jsonenc"
)

// TestBatchReset: a reset batch holds no events, keeps its arrays through
// fewer than shrinkAfter small batches in a row, and gives them up after.
func TestBatchReset(t *testing.T) {
	b := newBatch()
	b.uniq = make([]abacus.AppliedEvent, 0, 10_000)
	for round := 1; round <= shrinkAfter; round++ {
		b.uniq = append(b.uniq, abacus.AppliedEvent{Event: abacus.Event{ID: "e"}})
		b.contribs = append(b.contribs, nil)
		b.reset()
		if len(b.uniq) != 0 || cap(b.uniq) > 0 && b.uniq[:1][0].ID != "" {
			t.Fatalf("round %d: the reset batch holds an event", round)
		}
		if kept := cap(b.uniq) == 10_000; kept != (round < shrinkAfter) {
			t.Fatalf("round %d: capacity %d", round, cap(b.uniq))
		}
	}
}

// TestBatchRollups: events that were not stored add nothing to the
// rollups (not their count, sum, max, latest or distinct value): a resend
// and a conflicting event (same id, other payload) in later batches, one
// lying inside its row's bounds and one setting its row's max and latest.
// A key no repeat touched is rolled up in full. (It guarded an attempt to
// merge rollup rows while gathering, BENCHMARKS "fifth round", and stays as
// the exact account of repeats across batches.)
func TestBatchRollups(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	if err := st.CreateTenant(ctx, &abacus.Tenant{ID: "t", Name: "t", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*abacus.Meter{
		{TenantID: "t", Key: "tokens", EventType: "call", Aggregation: abacus.AggSum, Value: "$.n", CreatedAt: now},
		{TenantID: "t", Key: "users", EventType: "call", Aggregation: abacus.AggUniqueCount, Value: "$.u", CreatedAt: now},
	} {
		if err := st.CreateMeter(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	a := New(Config{Store: st})
	seq := uint64(0)
	apply := func(events ...abacus.Event) {
		t.Helper()
		b := newBatch()
		meters, v := a.meters.last()
		for _, e := range events {
			seq++
			b.add(message(seq, &e), meters, v, a)
		}
		if err := a.apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	ev := func(id, customer string, at time.Duration, n int, u string) abacus.Event {
		return abacus.Event{TenantID: "t", ID: id, Type: "call", Customer: customer, Time: now.Add(at), TimeGiven: true,
			IngestTime: now, Properties: []byte(fmt.Sprintf(`{"n":%d,"u":%q}`, n, u))}
	}
	e1 := ev("e1", "c", 30*time.Second, 10, "u1")
	apply(e1, ev("e2", "c", 10*time.Second, 5, "u2")) // no meters loaded yet: rolled up in the transaction
	// e1's resend lies inside its row's bounds and is not its latest; the
	// conflict below would be its row's max and latest.
	apply(e1, ev("e3", "c", 20*time.Second, 7, "u3"), ev("e7", "c", 45*time.Second, 20, "u7"), ev("e4", "d", 0, 4, "u4"))
	apply(ev("e1", "c", 50*time.Second, 1000, "u-conflict"), ev("e6", "c", 5*time.Second, 6, "u1"), ev("e5", "d", 40*time.Second, 1, "u4"))

	got := map[string]string{}
	for _, meter := range []string{"tokens", "users"} {
		err := st.ScanRollups(ctx, abacus.RollupFilter{TenantID: "t", Meter: meter, FromMinute: 0, ToMinute: 1 << 40}, func(r *abacus.RollupRow) error {
			got[meter+"/"+r.Customer] = fmt.Sprintf("count %d sum %s min %s max %s latest %s@%s", r.Count, r.Sum.String(), r.Min.String(), r.Max.String(), r.Latest.String(), r.LatestID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var uniques []string
	err := st.ScanUniques(ctx, abacus.RollupFilter{TenantID: "t", Meter: "users", FromMinute: 0, ToMinute: 1 << 40}, func(u *abacus.UniqueValue) error {
		uniques = append(uniques, u.Customer+":"+u.Value)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"tokens/c": "count 5 sum 48 min 5 max 20 latest 20@e7",
		"tokens/d": "count 2 sum 5 min 1 max 4 latest 1@e5",
		"users/c":  "count 5 sum 0 min 0 max 0 latest 0@",
		"users/d":  "count 2 sum 0 min 0 max 0 latest 0@",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rollups:\n%v\nwant\n%v", got, want)
	}
	slices.Sort(uniques)
	if fmt.Sprint(uniques) != "[c:u1 c:u2 c:u3 c:u7 d:u4]" {
		t.Errorf("distinct values: %v", uniques)
	}
}

// TestFillInterval: a gathered batch is offered from its due time on, not
// before, however much arrives; at once when it is due already; and at
// once, due or not, when it is full: MaxBatchEvents events, or half the
// queue's bytes.
func TestFillInterval(t *testing.T) {
	msg := func(seq uint64) abacus.LogMessage {
		e := abacus.Event{TenantID: "t", ID: fmt.Sprint("e", seq), Type: "call", Customer: "c", Time: time.Unix(0, 0)}
		return message(seq, &e)
	}
	// fill in the background; the result is the events of the batch
	// offered, or -1 if none was offered within wait.
	a := New(Config{Interval: time.Hour, MaxBatchEvents: 3})
	run := func(due time.Time, queued int, wait time.Duration) int {
		t.Helper()
		q := newQueue(a.cfg.QueueBytes)
		for i := range queued {
			q.ch <- msg(uint64(i + 1))
		}
		ready, done := make(chan *batch), make(chan struct{})
		defer close(done)
		go a.fill(q, newBatch(), due, ready, done)
		select {
		case b := <-ready:
			return b.n
		case <-time.After(wait):
			return -1
		}
	}
	if n := run(time.Now().Add(time.Hour), 2, 100*time.Millisecond); n != -1 {
		t.Errorf("offered a batch of %d events an hour before it was due", n)
	}
	if n := run(time.Now().Add(-time.Millisecond), 0, 10*time.Second); n != 0 {
		t.Errorf("due batch: offered %d events, want the empty batch at once", n)
	}
	if n := run(time.Now().Add(time.Hour), 5, 10*time.Second); n != 3 {
		t.Errorf("full batch: offered %d events, want 3 (MaxBatchEvents) before it was due", n)
	}
	if n := run(time.Now().Add(150*time.Millisecond), 2, 10*time.Second); n != 2 {
		t.Errorf("offered %d events once due, want 2", n)
	}
	// Messages e1..e5 are the same size: half the queue holds two. The
	// batch offered goes on taking messages until it is taken (here at
	// once), so it holds two to five.
	a = New(Config{Interval: time.Hour, QueueBytes: int64(4 * len(msg(1).Data))})
	if n := run(time.Now().Add(time.Hour), 5, 10*time.Second); n < 2 {
		t.Errorf("batch at half the queue's bytes: offered %d events, want it offered with 2 or more before it was due", n)
	}
	if n := run(time.Now().Add(time.Hour), 1, 100*time.Millisecond); n != -1 {
		t.Errorf("offered a batch of %d events below half the queue's bytes an hour before it was due", n)
	}
}

// callMeters compiles the meters of tenant t's "call" events that the
// batch tests evaluate: "calls" counts them, "tokens" sums $.n grouped by
// model ($.m).
func callMeters(t *testing.T) map[[2]string][]*Meter {
	t.Helper()
	tokens, err := CompileMeter(&abacus.Meter{TenantID: "t", Key: "tokens", EventType: "call", Aggregation: abacus.AggSum, Value: "$.n",
		GroupBy: map[string]string{"model": "$.m"}})
	if err != nil {
		t.Fatal(err)
	}
	calls, err := CompileMeter(&abacus.Meter{TenantID: "t", Key: "calls", EventType: "call", Aggregation: abacus.AggCount})
	if err != nil {
		t.Fatal(err)
	}
	return map[[2]string][]*Meter{{"t", "call"}: {calls, tokens}}
}

// message is a log message of partition 0 holding e alone.
func message(seq uint64, e *abacus.Event) abacus.LogMessage {
	return abacus.LogMessage{Partition: 0, Sequence: seq, Data: abacus.AppendRecord(abacus.AppendMessage(nil, 1), e)}
}

// TestBatchRollupsAgain: batch.rollups adds up exactly the events it is
// told were stored, each time it is called on the same batch (a retried
// transaction calls it again), and rows no stored event added to are left
// out; an event whose contributions fall in two rows adds to both.
func TestBatchRollupsAgain(t *testing.T) {
	meters := callMeters(t)
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	b := newBatch()
	for i, p := range []string{`{"n":1,"m":"a"}`, `{"n":2,"m":"b"}`, `{"n":4,"m":"a"}`, `{"n":8,"m":"b"}`} {
		e := abacus.Event{TenantID: "t", ID: fmt.Sprint("e", i), Type: "call", Customer: "c", Time: now.Add(time.Duration(i) * time.Second),
			TimeGiven: true, IngestTime: now, Properties: []byte(p)}
		b.add(message(uint64(i+1), &e), meters, 1, &Aggregator{})
	}
	sums := func(stored ...int) string {
		t.Helper()
		ds, err := b.rollups(func(i int) bool { return slices.Contains(stored, i) }, NewRollup())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			out = append(out, fmt.Sprintf("%s%s:%d/%s/%s", d.Meter, d.Group, d.Count, d.Sum.String(), d.LatestID))
		}
		return fmt.Sprint(out)
	}
	for _, c := range []struct {
		stored []int
		want   string
	}{
		{[]int{0, 1, 2, 3}, `[calls{}:4/0/ tokens{"model":"a"}:2/5/e2 tokens{"model":"b"}:2/10/e3]`},
		{nil, `[]`},
		{[]int{1}, `[calls{}:1/0/ tokens{"model":"b"}:1/2/e1]`},
		{[]int{0, 3}, `[calls{}:2/0/ tokens{"model":"a"}:1/1/e0 tokens{"model":"b"}:1/8/e3]`},
	} {
		if got := sums(c.stored...); got != c.want {
			t.Errorf("stored %v: %s, want %s", c.stored, got, c.want)
		}
	}
}

// TestBatchCountedJSON: gathering gives every event its counted list's
// JSON, the encoding the stores keep, and the events of a batch with equal
// lists one string; an event counted nowhere gets "[]". It fails if a
// list is encoded differently from what a store would encode, or if equal
// lists are not shared (the store's lookup then compares their bytes).
func TestBatchCountedJSON(t *testing.T) {
	meters := callMeters(t)
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	b := newBatch()
	for i, p := range []string{`{"n":1,"m":"a"}`, `{"n":2,"m":"b\""}`, `{"n":4,"m":"a"}`, `{"n":"x"}`, `{"n":8,"m":"b\""}`} {
		e := abacus.Event{TenantID: "t", ID: fmt.Sprint("e", i), Type: "call", Customer: "c", Time: now, TimeGiven: true, IngestTime: now,
			Properties: []byte(p)}
		if i == 3 {
			e.Type = "other" // no meter counts it
		}
		b.add(message(uint64(i+1), &e), meters, 1, &Aggregator{})
	}
	want := []string{
		`[{"meter":"calls","group":"{}"},{"meter":"tokens","group":"{\"model\":\"a\"}"}]`,
		`[{"meter":"calls","group":"{}"},{"meter":"tokens","group":"{\"model\":\"b\\\"\"}"}]`,
		`[{"meter":"calls","group":"{}"},{"meter":"tokens","group":"{\"model\":\"a\"}"}]`,
		`[]`,
		`[{"meter":"calls","group":"{}"},{"meter":"tokens","group":"{\"model\":\"b\\\"\"}"}]`,
	}
	for i, e := range b.uniq {
		if e.CountedJSON != want[i] {
			t.Errorf("event %d: CountedJSON %s, want %s", i, e.CountedJSON, want[i])
		}
		if enc := string(jsonenc.Counted(nil, e.Counted)); e.CountedJSON != enc {
			t.Errorf("event %d: CountedJSON %s, but its Counted encodes as %s", i, e.CountedJSON, enc)
		}
	}
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	if !same(b.uniq[0].CountedJSON, b.uniq[2].CountedJSON) || !same(b.uniq[1].CountedJSON, b.uniq[4].CountedJSON) {
		t.Error("events with equal counted lists do not share one string")
	}
	b.reset()
	if len(b.lists) != 0 {
		t.Errorf("reset kept %d lists", len(b.lists))
	}
}

// TestBatchMetersChanged: a batch gathered under one set of meters and
// applied after another meter was created is evaluated again in its
// transaction, counted lists included: the stored event names both meters.
// It fails if the transaction keeps the lists encoded while gathering.
func TestBatchMetersChanged(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	if err := st.CreateTenant(ctx, &abacus.Tenant{ID: "t", Name: "t", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	meter := func(m *abacus.Meter) {
		t.Helper()
		m.TenantID, m.EventType, m.CreatedAt = "t", "call", now
		if err := st.CreateMeter(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	meter(&abacus.Meter{Key: "calls", Aggregation: abacus.AggCount})
	a := New(Config{Store: st})
	seq := uint64(0)
	gathered := func(id string) *batch {
		seq++
		e := abacus.Event{TenantID: "t", ID: id, Type: "call", Customer: "c", Time: now, TimeGiven: true, IngestTime: now,
			Properties: []byte(`{"n":3,"m":"a"}`)}
		b := newBatch()
		meters, v := a.meters.last()
		b.add(message(seq, &e), meters, v, a)
		return b
	}
	if err := a.apply(ctx, gathered("e1")); err != nil { // loads the meters
		t.Fatal(err)
	}
	b := gathered("e2")
	if b.metersVersion < 0 || b.uniq[0].CountedJSON != `[{"meter":"calls","group":"{}"}]` {
		t.Fatalf("gathered under version %d with list %s", b.metersVersion, b.uniq[0].CountedJSON)
	}
	meter(&abacus.Meter{Key: "tokens", Aggregation: abacus.AggSum, Value: "$.n", GroupBy: map[string]string{"model": "$.m"}})
	if err := a.apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	e, err := st.FindEvent(ctx, "t", "e2")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%+v", e.Counted); got != `[{Meter:calls Group:{}} {Meter:tokens Group:{"model":"a"}}]` {
		t.Errorf("e2 counted in %s, want calls and tokens", got)
	}
}
