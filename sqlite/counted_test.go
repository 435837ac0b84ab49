package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/storetest"
)

// TestCountedSets checks where the counted lists are stored (migration
// 0006) and that every event reads back its own:
//   - a row written before the migration keeps its list;
//   - a list shared in its insert, or cached, is a row of counted_sets
//     named by id; a list seen once and not cached, or "[]", stays in the
//     event's row;
//   - a failed transaction drops the cache, and the list it added is added
//     again;
//   - after a restart, or once the cache has started over, a stored list is
//     found, not added twice.
func TestCountedSets(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "abacus.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	reopen := func() {
		t.Helper()
		s.Close()
		if s, err = Open(ctx, path); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateTenant(ctx, &abacus.Tenant{ID: "acme", Name: "acme", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return at }
	a := []abacus.Counted{{Meter: "events"}, {Meter: "tokens", Group: `{"model":"m"}`}}
	b := []abacus.Counted{{Meter: "events"}, {Meter: "tokens", Group: `{"model":"n"}`}}
	c := []abacus.Counted{{Meter: "latency", Group: `{"region":"eu"}`}}
	want := map[string][]abacus.Counted{}
	with := func(id string, counted []abacus.Counted) abacus.AppliedEvent {
		e := storetest.RawEvent("acme", id, "c-1", at)
		e.Counted = counted
		want[id] = counted
		return e
	}
	exec := func(qs ...string) {
		t.Helper()
		for _, q := range qs {
			if _, err := s.w.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}

	// A store from before 0006, with an event in it. Opening it migrates.
	storetest.ApplyStamped(t, s, now, with("old", a))
	exec(`DROP TABLE counted_sets`, `ALTER TABLE events DROP COLUMN counted_set`, `DELETE FROM schema_migrations WHERE version = 6`)
	reopen()

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
	if err == nil || s.counted.Len() != 0 {
		t.Fatalf("failed apply: err %v, %d lists cached", err, s.counted.Len())
	}
	storetest.ApplyStamped(t, s, now, with("c1", c), with("c2", c), with("b2", b), with("a3", a))
	storetest.ApplyStamped(t, s, now, with("c3", c))
	reopen()
	storetest.ApplyStamped(t, s, now, with("a4", a), with("a5", a))
	s.counted.SetLimit(1) // a is cached; c, added, starts the cache over
	storetest.ApplyStamped(t, s, now, with("c4", c), with("c5", c), with("a6", a), with("a7", a))
	storetest.ApplyStamped(t, s, now, with("c6", c), with("a8", a))

	r, err := s.r.QueryContext(ctx, `SELECT e.id, e.counted, coalesce(c.counted, '-') FROM events e
		LEFT JOIN counted_sets c ON c.id = e.counted_set ORDER BY e.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	for r.Next() {
		var id, inline, set string
		if err := r.Scan(&id, &inline, &set); err != nil {
			t.Fatal(err)
		}
		got = append(got, id+" "+inline+" "+set)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	ja, jb, jc := `[{"meter":"events"},{"meter":"tokens","group":"{\"model\":\"m\"}"}]`, `[{"meter":"events"},{"meter":"tokens","group":"{\"model\":\"n\"}"}]`,
		`[{"meter":"latency","group":"{\"region\":\"eu\"}"}]`
	inRow := func(id, list string) string { return id + " " + list + " -" }
	inSet := func(id, list string) string { return id + "  " + list }
	wantRows := []string{
		inSet("a1", ja), inSet("a2", ja),
		inRow("a3", ja), // a's id went with the cache the failed transaction dropped
		inSet("a4", ja), inSet("a5", ja), inSet("a6", ja), inSet("a7", ja),
		inRow("a8", ja), // c started the cache over
		inRow("b1", jb), inRow("b2", jb),
		inSet("c1", jc), inSet("c2", jc), inSet("c3", jc), inSet("c4", jc), inSet("c5", jc),
		inSet("c6", jc),
		inRow("n1", "[]"), inRow("n2", "[]"),
		inRow("old", ja),
	}
	if g, w := strings.Join(got, "\n"), strings.Join(wantRows, "\n"); g != w {
		t.Fatalf("stored lists:\n%s\nwant:\n%s", g, w)
	}
	var sets int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM counted_sets`).Scan(&sets); err != nil || sets != 2 {
		t.Fatalf("counted_sets rows = %d (%v), want 2", sets, err)
	}
	for id, counted := range want {
		e, err := s.FindEvent(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := fmt.Sprintf("%+v", e.Counted), fmt.Sprintf("%+v", counted); g != w {
			t.Errorf("%s counted = %s, want %s", id, g, w)
		}
	}

	// A row naming a list that is not there says so.
	exec(`UPDATE events SET counted_set = 999 WHERE id = 'a1'`)
	if _, err := s.FindEvent(ctx, "acme", "a1"); err == nil || !strings.Contains(err.Error(), "counted_sets does not hold") {
		t.Fatalf("dangling list: %v", err)
	}
}
