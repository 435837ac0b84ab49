package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/jsonenc"
	"github.com/abacus-billing/abacus/storetest"
)

// TestCountedSets checks where the counted lists are stored (migration
// 0006) with PostgreSQL's concurrent appliers in mind: appliers of two
// processes adding the same new lists at once get one row and one id each; a list added by a transaction
// that then fails stays in counted_sets and is used by the next; after a
// restart a stored list is found, not added twice; a list another process
// adds while an applier's statement waits on it is found; a list seen once and
// not cached stays in its event's row, and every event reads back its own.
func TestCountedSets(t *testing.T) {
	ctx := context.Background()
	url := TestSchemaURL(t)
	s, err := Open(ctx, url)
	must(t, err)
	defer func() { s.Close() }()
	must(t, s.CreateTenant(ctx, &abacus.Tenant{ID: "acme", Name: "acme", CreatedAt: time.Now()}))
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return at }
	list := func(n int) []abacus.Counted {
		return []abacus.Counted{{Meter: "tokens", Group: fmt.Sprintf(`{"model":"m-%d"}`, n)}}
	}
	want := map[string][]abacus.Counted{}
	var mu sync.Mutex
	with := func(id string, counted []abacus.Counted) abacus.AppliedEvent {
		e := storetest.RawEvent("acme", id, "c-1", at)
		e.Counted = counted
		mu.Lock()
		want[id] = counted
		mu.Unlock()
		return e
	}

	// Eight appliers at once, each with lists 0-9 in its own order, in
	// two processes (each store adds lists on one connection of its own).
	s2, err := Open(ctx, url)
	must(t, err)
	defer s2.Close()
	insert := func(st *Store, events ...abacus.AppliedEvent) error {
		return st.Apply(ctx, func(tx abacus.ApplyTx) error {
			if _, err := tx.Stamp(ctx, now); err != nil {
				return err
			}
			_, err := tx.InsertEvents(ctx, events)
			return err
		})
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var events []abacus.AppliedEvent
			for i := range 10 {
				n := (i + w*3) % 10
				events = append(events, with(fmt.Sprintf("w%d-%d-a", w, n), list(n)), with(fmt.Sprintf("w%d-%d-b", w, n), list(n)))
			}
			if err := insert([]*Store{s, s2}[w%2], events...); err != nil {
				t.Errorf("applier %d: %v", w, err)
			}
		}()
	}
	wg.Wait()

	err = s.Apply(ctx, func(tx abacus.ApplyTx) error {
		if _, err := tx.Stamp(ctx, now); err != nil {
			return err
		}
		if _, err := tx.InsertEvents(ctx, []abacus.AppliedEvent{with("f1", list(10)), with("f2", list(10))}); err != nil {
			return err
		}
		return errors.New("boom")
	})
	if err == nil {
		t.Fatal("the failing apply did not fail")
	}
	delete(want, "f1")
	delete(want, "f2")
	storetest.ApplyStamped(t, s, now, with("g1", list(10)), with("once", list(11)))
	s.Close()
	if s, err = Open(ctx, url); err != nil {
		t.Fatal(err)
	}
	storetest.ApplyStamped(t, s, now, with("h1", list(3)), with("h2", list(3)))

	// Another process adds a list while an applier's statement adding it
	// waits on that insert: the statement neither adds it (the conflict)
	// nor sees it (its snapshot is older), and the next one finds it.
	other, err := s2.pool.Begin(ctx)
	must(t, err)
	_, err = other.Exec(ctx, `INSERT INTO counted_sets(counted) VALUES ($1)`, string(jsonenc.Counted(nil, list(12))))
	must(t, err)
	done := make(chan error)
	go func() { done <- insert(s, with("k1", list(12)), with("k2", list(12))) }()
	time.Sleep(300 * time.Millisecond) // for the statement to start and wait
	must(t, other.Commit(ctx))
	must(t, <-done)

	var sets, inRow int
	must(t, s.pool.QueryRow(ctx, `SELECT count(*) FROM counted_sets`).Scan(&sets))
	must(t, s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE counted_set = 0) FROM events`).Scan(&inRow))
	if sets != 12 || inRow != 1 {
		t.Fatalf("counted_sets rows %d, events with the list in the row %d; want 12 and 1 (once)", sets, inRow)
	}
	var onceList string
	must(t, s.pool.QueryRow(ctx, `SELECT counted FROM events WHERE id = 'once'`).Scan(&onceList))
	if want := string(jsonenc.Counted(nil, list(11))); onceList != want {
		t.Fatalf("once's row holds %q, want %q", onceList, want)
	}
	for id, counted := range want {
		e, err := s.FindEvent(ctx, "acme", id)
		must(t, err)
		if g, w := fmt.Sprintf("%+v", e.Counted), fmt.Sprintf("%+v", counted); g != w {
			t.Errorf("%s counted = %s, want %s", id, g, w)
		}
	}

	// A row naming a list that is not there says so.
	_, err = s.pool.Exec(ctx, `UPDATE events SET counted_set = 999999 WHERE id = 'h1'`)
	must(t, err)
	if _, err := s.FindEvent(ctx, "acme", "h1"); err == nil || !strings.Contains(err.Error(), "counted_sets does not hold") {
		t.Fatalf("dangling list: %v", err)
	}
}
