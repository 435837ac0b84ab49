package sqlite

import (
	"fmt"
	"strings"
	"testing"
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

// TestRollupCacheOwnsStrings: rows entering the cache must not point into
// the buffer their key and latest id were decoded from (a log message's
// arena), or the cache would keep every such message alive; a row already
// cached lends its key to the newer row.
func TestRollupCacheOwnsStrings(t *testing.T) {
	arena := strings.Repeat("x", 1<<10) + "t-1|meter|cust-1|{}|ev-9"
	base := len(arena) - len("t-1|meter|cust-1|{}|ev-9")
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
	var c rollupCache
	row := &abacus.RollupDelta{RollupKey: key, Count: 1, LatestID: sub(20, 4)}
	c.commit(map[abacus.RollupKey]*abacus.RollupDelta{key: row})
	got, ok := c.get(key)
	if !ok || got.Count != 1 {
		t.Fatalf("cached row: %+v, %v", got, ok)
	}
	for _, s := range []string{got.TenantID, got.Meter, got.Customer, got.Group, got.LatestID} {
		if inArena(s) {
			t.Fatalf("cached row keeps %q from the decoding buffer", s)
		}
	}
	owned := got.RollupKey
	next := &abacus.RollupDelta{RollupKey: key, Count: 2, LatestID: sub(20, 4)}
	c.commit(map[abacus.RollupKey]*abacus.RollupDelta{key: next})
	got, _ = c.get(key)
	if got.Count != 2 || unsafe.StringData(got.Customer) != unsafe.StringData(owned.Customer) || inArena(got.LatestID) {
		t.Fatalf("second commit: count %d, key reused %v, latest id owned %v", got.Count,
			unsafe.StringData(got.Customer) == unsafe.StringData(owned.Customer), !inArena(got.LatestID))
	}
}

// TestMatchReturned: RETURNING rows are matched to the events given in
// their order, and by key in any other.
func TestMatchReturned(t *testing.T) {
	ev := func(tenant, id string) abacus.AppliedEvent {
		return abacus.AppliedEvent{Event: abacus.Event{TenantID: tenant, ID: id}}
	}
	chunk := []abacus.AppliedEvent{ev("t", "a"), ev("t", "b"), ev("u", "a"), ev("t", "c"), ev("t", "d")}
	for _, c := range []struct {
		name     string
		returned []returnedRow
		want     string
	}{
		{"in order", []returnedRow{{1, "t", "a"}, {2, "u", "a"}, {3, "t", "c"}}, "[1 0 2 3 0]"},
		{"none", nil, "[0 0 0 0 0]"},
		{"out of order", []returnedRow{{7, "t", "c"}, {8, "t", "b"}, {9, "t", "a"}}, "[9 8 0 7 0]"},
		{"out of order, then a later one", []returnedRow{{7, "t", "c"}, {8, "t", "a"}, {9, "t", "d"}}, "[8 0 0 7 9]"},
		{"the last only", []returnedRow{{4, "t", "d"}}, "[0 0 0 0 4]"},
	} {
		inserted, rowids := make([]bool, len(chunk)), make([]int64, len(chunk))
		if err := matchReturned(chunk, c.returned, inserted, rowids); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := make([]int64, len(chunk))
		for i := range got {
			if inserted[i] {
				got[i] = rowids[i]
			}
		}
		if s := fmt.Sprint(got); s != c.want {
			t.Errorf("%s: rowids %s, want %s", c.name, s, c.want)
		}
	}
	inserted, rowids := make([]bool, len(chunk)), make([]int64, len(chunk))
	if err := matchReturned(chunk, []returnedRow{{1, "t", "zz"}}, inserted, rowids); err == nil {
		t.Fatal("an unknown returned event was accepted")
	}
}
