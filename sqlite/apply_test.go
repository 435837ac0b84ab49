package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/abacus-billing/abacus"
)

func TestChunks(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 127, 128, 129, 300, 1000} {
		sum := 0
		for _, c := range chunks(n, 128) {
			if c <= 0 || c > 128 {
				t.Fatalf("chunks(%d) has size %d", n, c)
			}
			sum += c
		}
		if sum != n {
			t.Errorf("chunks(%d) sums to %d", n, sum)
		}
	}
}

// openTemp opens a store in a fresh directory, closed when the test ends.
func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "abacus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRollupCache: rows entering the cache must not point into the buffer
// their key and latest id were decoded from (a log message's arena), or the
// cache would keep every such message alive; a cached row keeps its key as
// later deltas merge into it; and a transaction that fails or panics after
// merging leaves no trace of its merges, in the cache or the table.
func TestRollupCache(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)

	arena := strings.Repeat("x", 1<<10) + "t-1|meter|cust-1|{}|ev-8|ev-9"
	base := len(arena) - len("t-1|meter|cust-1|{}|ev-8|ev-9")
	sub := func(from, n int) string { return arena[base+from : base+from+n] }
	inArena := func(s string) bool {
		if s == "" {
			return false
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		lo := uintptr(unsafe.Pointer(unsafe.StringData(arena)))
		return p >= lo && p < lo+uintptr(len(arena))
	}
	key := abacus.RollupKey{TenantID: sub(0, 3), Meter: sub(4, 5), Customer: sub(10, 6), Group: sub(17, 2), Minute: 7}
	delta := func(value int64, at int64, id string) abacus.RollupDelta {
		d := abacus.RollupDelta{RollupKey: key, Count: 1, HasValue: true, LatestTime: at, LatestID: id}
		d.Sum.SetInt64(value)
		d.Min.SetInt64(value)
		d.Max.SetInt64(value)
		d.Latest.SetInt64(value)
		return d
	}
	add := func(d abacus.RollupDelta, fail error) error {
		return s.Apply(ctx, func(tx abacus.ApplyTx) error {
			if err := tx.AddRollups(ctx, []abacus.RollupDelta{d}); err != nil {
				return err
			}
			return fail
		})
	}
	stored := func() string {
		var count int64
		var sum, latestID string
		if err := s.r.QueryRowContext(ctx, `SELECT count, sum, latest_id FROM rollups WHERE tenant_id = 't-1'`).Scan(&count, &sum, &latestID); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d %s %s", count, sum, latestID)
	}

	if err := add(delta(5, 100, sub(20, 4)), nil); err != nil {
		t.Fatal(err)
	}
	got := s.rollups.rows[key]
	if got == nil || got.Count != 1 {
		t.Fatalf("cached row: %+v", got)
	}
	for _, str := range []string{got.TenantID, got.Meter, got.Customer, got.Group, got.LatestID} {
		if inArena(str) {
			t.Fatalf("cached row keeps %q from the decoding buffer", str)
		}
	}
	owned := got.RollupKey
	if err := add(delta(7, 200, sub(25, 4)), nil); err != nil {
		t.Fatal(err)
	}
	got = s.rollups.rows[key]
	if got.Count != 2 || unsafe.StringData(got.Customer) != unsafe.StringData(owned.Customer) || inArena(got.LatestID) {
		t.Fatalf("second delta: count %d, key kept %v, latest id owned %v", got.Count,
			unsafe.StringData(got.Customer) == unsafe.StringData(owned.Customer), !inArena(got.LatestID))
	}
	if g := stored(); g != "2 12 ev-9" {
		t.Fatalf("stored after two deltas: %s", g)
	}

	if err := add(delta(100, 300, "ev-10"), errors.New("refused")); err == nil {
		t.Fatal("the failing transaction committed")
	}
	if s.rollups.rows != nil || s.rollups.old != nil {
		t.Fatalf("a failed transaction left the cache: %d rows", len(s.rollups.rows))
	}
	if g := stored(); g != "2 12 ev-9" {
		t.Fatalf("stored after a failed transaction: %s", g)
	}
	if err := add(delta(1, 400, "ev-11"), nil); err != nil {
		t.Fatal(err)
	}
	if g := stored(); g != "3 13 ev-11" {
		t.Fatalf("stored after the next delta: %s", g)
	}

	// A panic after merging: rolled back, the cache dropped, the writer
	// free for the next transaction.
	func() {
		defer func() { recover() }()
		s.Apply(ctx, func(tx abacus.ApplyTx) error {
			if err := tx.AddRollups(ctx, []abacus.RollupDelta{delta(50, 500, "ev-12")}); err != nil {
				return err
			}
			panic("applier bug")
		})
	}()
	if s.rollups.rows != nil || s.rollups.old != nil {
		t.Fatalf("a panicking transaction left the cache: %d rows", len(s.rollups.rows))
	}
	if err := add(delta(2, 600, "ev-13"), nil); err != nil {
		t.Fatal(err)
	}
	if g := stored(); g != "4 15 ev-13" {
		t.Fatalf("stored after a panicking transaction: %s", g)
	}
}

// TestRollupCacheGenerations: the cache keeps two generations of rows;
// a row merged again moves to the young one (under its own key, not the
// delta's), a row left alone for a whole generation leaves the cache, and
// a row read back after leaving it merges onto what is stored. The same
// steps run twice: generations bounded by rows (two, with a clock that
// stands still), and by age (a minute, the steps 30 s apart).
func TestRollupCacheGenerations(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		apart time.Duration
	}{{"rows", 2, 0}, {"age", 0, 30 * time.Second}} {
		t.Run(tc.name, func(t *testing.T) { testRollupCacheGenerations(t, tc.limit, tc.apart) })
	}
}

func testRollupCacheGenerations(t *testing.T, limit int, apart time.Duration) {
	ctx := context.Background()
	s := openTemp(t)
	s.rollups.limit = limit
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	s.rollups.now = func() time.Time { return now }

	// Each delta's key points into a buffer of its own, as a log
	// message's decoded strings do; no cached key may keep one.
	var buffers []string
	key := func(customer string) abacus.RollupKey {
		buf := "t-1|m|{}|" + customer
		buffers = append(buffers, buf)
		return abacus.RollupKey{TenantID: buf[0:3], Meter: buf[4:5], Group: buf[6:8], Customer: buf[9:], Minute: 7}
	}
	inBuffer := func(str string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(str)))
		for _, b := range buffers {
			lo := uintptr(unsafe.Pointer(unsafe.StringData(b)))
			if p >= lo && p < lo+uintptr(len(b)) {
				return true
			}
		}
		return false
	}
	add := func(customer string, value int64) {
		t.Helper()
		d := abacus.RollupDelta{RollupKey: key(customer), Count: 1, HasValue: true, LatestTime: value, LatestID: fmt.Sprint("ev-", value)}
		d.Sum.SetInt64(value)
		d.Min.SetInt64(value)
		d.Max.SetInt64(value)
		d.Latest.SetInt64(value)
		if err := s.Apply(ctx, func(tx abacus.ApplyTx) error { return tx.AddRollups(ctx, []abacus.RollupDelta{d}) }); err != nil {
			t.Fatal(err)
		}
	}
	cached := func() string {
		var young, old []string
		for k := range s.rollups.rows {
			young = append(young, k.Customer)
		}
		for k := range s.rollups.old {
			old = append(old, k.Customer)
		}
		slices.Sort(young)
		slices.Sort(old)
		return fmt.Sprintf("young %v old %v", young, old)
	}
	step := func(customer string, value int64, want string) {
		t.Helper()
		add(customer, value)
		now = now.Add(apart)
		if got := cached(); got != want {
			t.Fatalf("after %s: %s, want %s", customer, got, want)
		}
		for _, gen := range []map[abacus.RollupKey]*abacus.RollupDelta{s.rollups.rows, s.rollups.old} {
			for k, r := range gen {
				for _, str := range []string{k.TenantID, k.Meter, k.Customer, k.Group, r.TenantID, r.Customer, r.LatestID} {
					if inBuffer(str) {
						t.Fatalf("after %s: the cached row of %s keeps %q from a delta's buffer", customer, k.Customer, str)
					}
				}
			}
		}
	}
	step("a", 1, "young [a] old []")
	step("b", 2, "young [a b] old []")
	step("c", 4, "young [c] old [a b]")
	step("a", 8, "young [a c] old [b]")
	step("d", 16, "young [d] old [a c]")
	step("b", 32, "young [b d] old [a c]") // b left the cache: read back

	rows, err := s.r.QueryContext(ctx, `SELECT customer_id, count, sum, min, max, latest_id FROM rollups ORDER BY customer_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var customer, sum, mn, mx, latest string
		var count int64
		if err := rows.Scan(&customer, &count, &sum, &mn, &mx, &latest); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s:%d/%s/%s/%s/%s", customer, count, sum, mn, mx, latest))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"a:2/9/1/8/ev-8", "b:2/34/2/32/ev-32", "c:1/4/4/4/ev-4", "d:1/16/16/16/ev-16"}
	if !slices.Equal(got, want) {
		t.Fatalf("stored rows\n got %v\nwant %v", got, want)
	}
}
