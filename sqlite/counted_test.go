package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/storetest"
)

// TestCountedSets checks where the counted lists are stored (migration
// 0006): a list shared in its transaction or already known is a row of
// counted_sets, named by id from the event's row; a list seen once, or
// "[]", stays in the row; a list a rolled-back transaction added is added
// again; rows from before the migration are read as they were; and the
// writer's cache of ids is dropped with a transaction that fails.
func TestCountedSets(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "abacus.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	if err := s.CreateTenant(ctx, &abacus.Tenant{ID: "acme", Name: "acme", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return at }
	a := []abacus.Counted{{Meter: "events"}, {Meter: "tokens", Group: `{"model":"m"}`}}
	b := []abacus.Counted{{Meter: "events"}, {Meter: "tokens", Group: `{"model":"n"}`}}
	c := []abacus.Counted{{Meter: "latency", Group: `{"region":"eu"}`}}
	with := func(id string, counted []abacus.Counted) abacus.AppliedEvent {
		e := storetest.RawEvent("acme", id, "c-1", at)
		e.Counted = counted
		return e
	}
	storetest.ApplyStamped(t, s, now, with("a1", a), with("a2", a), with("b1", b), with("n1", nil), with("n2", nil))
	err = s.Apply(ctx, func(tx abacus.ApplyTx) error {
		if _, err := tx.Stamp(ctx, now); err != nil {
			return err
		}
		if _, err := tx.InsertEvents(ctx, []abacus.AppliedEvent{with("c1", c), with("c2", c)}); err != nil {
			return err
		}
		return errors.New("boom")
	})
	if err == nil || s.counted.ids != nil {
		t.Fatalf("failed apply: err %v, cached ids %v", err, s.counted.ids)
	}
	storetest.ApplyStamped(t, s, now, with("c1", c), with("c2", c), with("b2", b), with("a3", a))
	storetest.ApplyStamped(t, s, now, with("c3", c))

	// A row as migration 0006 found it: the list in the row, no set.
	if _, err := s.w.ExecContext(ctx, `UPDATE events SET counted = ?, counted_set = 0 WHERE id = 'a2'`, `[{"meter":"old"}]`); err != nil {
		t.Fatal(err)
	}
	rows := func() string {
		t.Helper()
		r, err := s.r.QueryContext(ctx, `SELECT e.id, e.counted, coalesce(c.counted, '-') FROM events e
			LEFT JOIN counted_sets c ON c.id = e.counted_set ORDER BY e.id`)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []string
		for r.Next() {
			var id, inline, set string
			if err := r.Scan(&id, &inline, &set); err != nil {
				t.Fatal(err)
			}
			out = append(out, id+" "+inline+" "+set)
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, "\n")
	}
	want := strings.Join([]string{
		`a1  [{"meter":"events"},{"meter":"tokens","group":"{\"model\":\"m\"}"}]`,
		`a2 [{"meter":"old"}] -`,
		// a's id went with the cache the failed transaction dropped.
		`a3 [{"meter":"events"},{"meter":"tokens","group":"{\"model\":\"m\"}"}] -`,
		`b1 [{"meter":"events"},{"meter":"tokens","group":"{\"model\":\"n\"}"}] -`,
		`b2 [{"meter":"events"},{"meter":"tokens","group":"{\"model\":\"n\"}"}] -`,
		`c1  [{"meter":"latency","group":"{\"region\":\"eu\"}"}]`,
		`c2  [{"meter":"latency","group":"{\"region\":\"eu\"}"}]`,
		`c3  [{"meter":"latency","group":"{\"region\":\"eu\"}"}]`,
		`n1 [] -`,
		`n2 [] -`,
	}, "\n")
	if got := rows(); got != want {
		t.Fatalf("stored lists:\n%s\nwant:\n%s", got, want)
	}
	var sets int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM counted_sets`).Scan(&sets); err != nil || sets != 2 {
		t.Fatalf("counted_sets rows = %d (%v), want 2", sets, err)
	}
	for id, w := range map[string]string{"a1": "[{events } {tokens {\"model\":\"m\"}}]", "a2": "[{old }]", "c3": "[{latency {\"region\":\"eu\"}}]", "n1": "[]"} {
		e, err := s.FindEvent(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmtCounted(e.Counted); got != w {
			t.Errorf("%s counted = %s, want %s", id, got, w)
		}
	}
}

func fmtCounted(cs []abacus.Counted) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = "{" + c.Meter + " " + c.Group + "}"
	}
	return "[" + strings.Join(parts, " ") + "]"
}
