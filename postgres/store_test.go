package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/jsonenc"
	"github.com/abacus-billing/abacus/internal/migration"
	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func rowText(r *abacus.RollupRow) string {
	return fmt.Sprintf("%s %d %s n=%d has=%v sum=%s min=%s max=%s latest=%s@%d/%s", r.Customer, r.Minute, r.Group, r.Count, r.HasValue,
		r.Sum.Text('f'), r.Min.Text('f'), r.Max.Text('f'), r.Latest.Text('f'), r.LatestTime, r.LatestID)
}

// TestRollupMergeMatchesGo checks the SQL merge against
// abacus.RollupDelta.Merge (which sqlite uses) on random deltas: count-only
// deltas, trailing zeros, equal values of different scale, ties on
// latest_time decided by latest_id, and negative numbers.
func TestRollupMergeMatchesGo(t *testing.T) {
	s := OpenTestStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	values := []string{"0", "1", "1.0", "1.50", "-2.25", "0.000000000001", "12345678901234567890.5", "3", "-0.5", "100"}
	ids := []string{"a", "B", "b", "e1", "e10", "e2"}
	want := map[abacus.RollupKey]*abacus.RollupDelta{}
	for batch := 0; batch < 30; batch++ {
		seen := map[abacus.RollupKey]bool{}
		var ds []abacus.RollupDelta
		for i := 0; i < 20; i++ {
			k := abacus.RollupKey{TenantID: "acme", Meter: "m", Customer: fmt.Sprint("c-", rng.IntN(3)), Group: "{}", Minute: int64(rng.IntN(4))}
			if seen[k] {
				continue // keys within one call are distinct
			}
			seen[k] = true
			d := abacus.RollupDelta{RollupKey: k, Count: int64(1 + rng.IntN(5))}
			if rng.IntN(4) > 0 {
				d.HasValue = true
				pick := func() apd.Decimal {
					var x apd.Decimal
					_, _, _ = x.SetString(values[rng.IntN(len(values))])
					return x
				}
				d.Sum, d.Min, d.Max, d.Latest = pick(), pick(), pick(), pick()
				d.LatestTime, d.LatestID = int64(rng.IntN(3)), ids[rng.IntN(len(ids))]
			}
			ds = append(ds, d)
			if w, ok := want[k]; ok {
				must(t, w.Merge(&d))
			} else {
				var w abacus.RollupDelta
				w.RollupKey = k
				must(t, w.Merge(&d))
				want[k] = &w
			}
		}
		must(t, s.Apply(ctx, func(tx abacus.ApplyTx) error { return tx.AddRollups(ctx, ds) }))
	}
	var got, exp []string
	must(t, s.ScanRollups(ctx, abacus.RollupFilter{TenantID: "acme", Meter: "m", FromMinute: 0, ToMinute: 10}, func(r *abacus.RollupRow) error {
		got = append(got, rowText(r))
		return nil
	}))
	for _, w := range want {
		exp = append(exp, rowText(w))
	}
	sort.Strings(got)
	sort.Strings(exp)
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Fatalf("SQL merge differs from Merge:\n got %q\nwant %q", got, exp)
	}
}

func event(tenant, id string, seq uint64, props string) abacus.AppliedEvent {
	e := abacus.AppliedEvent{
		Event:     abacus.Event{TenantID: tenant, ID: id, Type: "llm", Customer: "c-1", Time: t0, TimeGiven: true, IngestTime: t0, Properties: []byte(props)},
		Partition: 1, Sequence: seq,
	}
	e.Hash = e.PayloadHash()
	return e
}

// insertEvents stamps tx and inserts events, as the aggregator does.
func insertEvents(ctx context.Context, tx abacus.ApplyTx, events []abacus.AppliedEvent) ([]abacus.InsertResult, error) {
	if _, err := tx.Stamp(ctx, time.Now); err != nil {
		return nil, err
	}
	return tx.InsertEvents(ctx, events)
}

// TestRepeatsInOneBatch: two repeats of one event in one call count twice.
func TestRepeatsInOneBatch(t *testing.T) {
	s := OpenTestStore(t)
	ctx := context.Background()
	e := event("acme", "e1", 1, `{}`)
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) error {
		res, err := insertEvents(ctx, tx, []abacus.AppliedEvent{e})
		if err == nil && !res[0].Inserted {
			err = fmt.Errorf("not inserted")
		}
		return err
	}))
	must(t, s.Apply(ctx, func(tx abacus.ApplyTx) error {
		return tx.RecordRepeats(ctx, []abacus.Repeat{
			{TenantID: "acme", EventID: "e1", Hash: e.Hash, Partition: 1, Sequence: 2, SeenAt: t0},
			{TenantID: "acme", EventID: "e1", Hash: e.Hash, Partition: 1, Sequence: 3, SeenAt: t0},
			{TenantID: "acme", EventID: "e1", Conflict: true, Hash: [16]byte{1}, Partition: 1, Sequence: 4, SeenAt: t0},
		})
	}))
	got, err := s.FindEvent(ctx, "acme", "e1")
	must(t, err)
	if got.Duplicates != 3 || len(got.Conflicts) != 1 || got.Conflicts[0].Sequence != 4 {
		t.Fatalf("event = %+v", got)
	}
}

// TestBytewiseOrder: customers page in byte order, as in sqlite, whatever
// the database's collation.
func TestBytewiseOrder(t *testing.T) {
	s := OpenTestStore(t)
	ctx := context.Background()
	must(t, s.CreateTenant(ctx, &abacus.Tenant{ID: "acme", CreatedAt: t0}))
	for _, id := range []string{"b", "B", "a", "A", "_"} {
		must(t, s.CreateCustomer(ctx, &abacus.Customer{TenantID: "acme", ID: id, TimeZone: "UTC", CreatedAt: t0}))
	}
	cs, err := s.ListCustomers(ctx, "acme", "", 10)
	must(t, err)
	var got []string
	for _, c := range cs {
		got = append(got, c.ID)
	}
	if fmt.Sprint(got) != "[A B _ a b]" {
		t.Fatalf("order = %v", got)
	}
}

// TestConcurrentMigrators opens several stores on one schema at once: the
// advisory lock makes them queue, and all end up ready.
func TestConcurrentMigrators(t *testing.T) {
	ctx := context.Background()
	admin, err := connectTest(ctx, TestURL())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	defer admin.Close(ctx)
	schema := "abacus_test_" + randomHex(8)
	_, err = admin.Exec(ctx, `CREATE SCHEMA `+schema)
	must(t, err)
	defer dropSchema(t, TestURL(), schema)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			cfg, err := pgxpool.ParseConfig(TestURL())
			if err != nil {
				errs[i] = err
				return
			}
			cfg.ConnConfig.RuntimeParams["search_path"] = schema
			s, err := openConfig(ctx, cfg)
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			errs[i] = s.Ready(ctx)
		})
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	var n int
	must(t, admin.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.schema_migrations`).Scan(&n))
	if n != len(migration.Files(migrations)) {
		t.Fatalf("schema_migrations rows = %d", n)
	}
}

// TestReadyChecksVersion: a schema from a newer (or older) binary is not
// ready.
func TestReadyChecksVersion(t *testing.T) {
	s := OpenTestStore(t)
	ctx := context.Background()
	_, err := s.pool.Exec(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES (999, 0)`)
	must(t, err)
	if err := s.Ready(ctx); err == nil {
		t.Fatal("Ready with schema version 999 = nil")
	}
}

// fakeTB records how OpenTestStore gives up.
type fakeTB struct {
	testing.TB
	how string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.how = "fatal"
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.how = "skip"
	runtime.Goexit()
}

// TestUnreachable: a missing server skips, except under CI=true.
func TestUnreachable(t *testing.T) {
	t.Setenv("ABACUS_TEST_POSTGRES", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	for ci, want := range map[string]string{"true": "fatal", "": "skip", "false": "skip"} {
		t.Setenv("CI", ci)
		f := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			OpenTestStore(f)
		}()
		<-done
		if f.how != want {
			t.Errorf("CI=%q: %s, want %s", ci, f.how, want)
		}
	}
}

func benchEvents(b *testing.B, n, round int) []abacus.AppliedEvent {
	es := make([]abacus.AppliedEvent, n)
	for i := range es {
		es[i] = event("acme", fmt.Sprintf("r%d-e%d", round, i), uint64(i), `{"tokens":123,"model":"gpt"}`)
		es[i].Counted = []abacus.Counted{{Meter: "tokens", Group: `{"model":"gpt"}`}}
	}
	return es
}

// copyInsertEvents is the COPY alternative to InsertEvents, kept here only
// to measure against: COPY into a temporary table, then INSERT ... SELECT.
// It keeps every counted list in its event's row (counted_set 0).
func copyInsertEvents(ctx context.Context, tx pgx.Tx, events []abacus.AppliedEvent) (int, error) {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS events_in (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`); err != nil {
		return 0, err
	}
	rows := make([][]any, len(events))
	for i := range events {
		e := &events[i]
		rows[i] = []any{e.TenantID, e.ID, e.Type, e.Customer, e.Time.UnixNano(), e.TimeGiven, e.IngestTime.UnixNano(),
			string(e.Properties), e.Hash[:], int32(e.Partition), int64(e.Sequence), string(jsonenc.Counted(nil, e.Counted)), string(jsonenc.Skipped(nil, e.Skipped)), int64(0), int64(1)}
	}
	cols := []string{"tenant_id", "id", "type", "customer_id", "time", "time_given", "ingest_time", "properties", "hash", "log_partition", "log_seq", "counted", "skipped", "duplicates", "applied_at"}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events_in"}, cols, pgx.CopyFromRows(rows)); err != nil {
		return 0, err
	}
	r, err := tx.Query(ctx, `INSERT INTO events(`+eventColumns+`, applied_at) SELECT `+eventColumns+`, applied_at FROM events_in ORDER BY tenant_id, id
		ON CONFLICT (tenant_id, id) DO NOTHING RETURNING tenant_id, id`)
	if err != nil {
		return 0, err
	}
	var t, id string
	return len(events), func() error { _, err := pgx.ForEachRow(r, []any{&t, &id}, func() error { return nil }); return err }()
}

// BenchmarkInsertEvents compares the two set-based ways of inserting a
// batch of new events, each in its own transaction, at the batch sizes the
// aggregator commits: 1,000 events under light load, 25,000 (its cap per
// applier) under saturation. Reported per event.
func BenchmarkInsertEvents(b *testing.B) {
	ctx := context.Background()
	ways := []struct {
		name   string
		insert func(s *Store, es []abacus.AppliedEvent) error
	}{
		{"unnest", func(s *Store, es []abacus.AppliedEvent) error {
			return s.Apply(ctx, func(tx abacus.ApplyTx) error { _, err := insertEvents(ctx, tx, es); return err })
		}},
		{"copy", func(s *Store, es []abacus.AppliedEvent) error {
			return s.tx(ctx, func(tx pgx.Tx) error { _, err := copyInsertEvents(ctx, tx, es); return err })
		}},
	}
	for _, n := range []int{1000, 25_000} {
		for _, w := range ways {
			b.Run(fmt.Sprintf("%s-%d", w.name, n), func(b *testing.B) {
				s := OpenTestStore(b)
				for i := 0; b.Loop(); i++ {
					must(b, w.insert(s, benchEvents(b, n, i)))
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
			})
		}
	}
}

// BenchmarkAddRollups measures merging 1000 deltas into existing rows.
func BenchmarkAddRollups(b *testing.B) {
	s := OpenTestStore(b)
	ctx := context.Background()
	ds := make([]abacus.RollupDelta, 1000)
	for i := range ds {
		var v apd.Decimal
		v.SetInt64(int64(i))
		ds[i] = abacus.RollupDelta{RollupKey: abacus.RollupKey{TenantID: "acme", Meter: "m", Customer: fmt.Sprint("c-", i%50), Group: "{}", Minute: int64(i / 50)},
			Count: 1, HasValue: true, Sum: v, Min: v, Max: v, Latest: v, LatestTime: int64(i), LatestID: "e"}
	}
	for b.Loop() {
		must(b, s.Apply(ctx, func(tx abacus.ApplyTx) error { return tx.AddRollups(ctx, ds) }))
	}
}

// TestConcurrentAddRollups: Applys merging into the same rows at once
// neither deadlock (rows are locked in key order) nor lose updates.
func TestConcurrentAddRollups(t *testing.T) {
	s := OpenTestStore(t)
	ctx := context.Background()
	const workers, rounds, keys = 4, 20, 30
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for range rounds {
				ds := make([]abacus.RollupDelta, keys)
				for i := range ds {
					var one apd.Decimal
					one.SetInt64(1)
					ds[i] = abacus.RollupDelta{RollupKey: abacus.RollupKey{TenantID: "acme", Meter: "m", Customer: fmt.Sprint("c-", i), Group: "{}"},
						Count: 1, HasValue: true, Sum: one, Min: one, Max: one, Latest: one}
				}
				rng.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
				if err := s.Apply(ctx, func(tx abacus.ApplyTx) error { return tx.AddRollups(ctx, ds) }); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	n := 0
	must(t, s.ScanRollups(ctx, abacus.RollupFilter{TenantID: "acme", Meter: "m", FromMinute: 0, ToMinute: 1}, func(r *abacus.RollupRow) error {
		n++
		if r.Count != workers*rounds || r.Sum.Text('f') != fmt.Sprint(workers*rounds) {
			return fmt.Errorf("row %s: count %d sum %s", r.Customer, r.Count, r.Sum.Text('f'))
		}
		return nil
	}))
	if n != keys {
		t.Fatalf("rows = %d", n)
	}
}
