package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/storetest"
)

// TestEventBlocks: an apply transaction lists the events it stored in one
// block per tenant, customer and minute of event time (a repeat is not
// listed), and migration 0005 builds the same blocks from the events of a
// store that had none.
func TestEventBlocks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "abacus.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ev := func(id, customer string, at time.Duration) abacus.AppliedEvent {
		return storetest.RawEvent("acme", id, customer, base.Add(at))
	}
	epoch := func(id string, ns int64) abacus.AppliedEvent {
		return storetest.RawEvent("acme", id, "c-old", time.Unix(0, ns).UTC())
	}
	m := time.Minute
	apply := func(at time.Time, events ...abacus.AppliedEvent) {
		t.Helper()
		storetest.ApplyStamped(t, s, func() time.Time { return at }, events...)
	}
	apply(base.Add(time.Hour),
		ev("a", "c-1", 0), ev("b", "c-2", 0), ev("c", "c-1", m-1), ev("d", "c-1", m), ev("e", "c-1", 5*m+1),
		epoch("f", -int64(m)-1), epoch("g", -int64(m)), epoch("h", -1), epoch("i", 0))
	apply(base.Add(2*time.Hour), ev("a", "c-1", 0), ev("j", "c-1", 30*time.Second))

	// Rowids are offered in order, and a repeat's is left unused: "a" again
	// was offered 10, so "j" is 11.
	h1, h2 := base.Add(time.Hour).UnixNano(), base.Add(2*time.Hour).UnixNano()
	b0 := base.Unix() / 60
	want := strings.Join([]string{
		fmt.Sprintf("acme c-1 %d %d 1 [1,3]", b0, h1),
		fmt.Sprintf("acme c-1 %d %d 11 [11]", b0, h2),
		fmt.Sprintf("acme c-1 %d %d 4 [4]", b0+1, h1),
		fmt.Sprintf("acme c-1 %d %d 5 [5]", b0+5, h1),
		fmt.Sprintf("acme c-2 %d %d 2 [2]", b0, h1),
		fmt.Sprintf("acme c-old -2 %d 6 [6]", h1),
		fmt.Sprintf("acme c-old -1 %d 7 [7,8]", h1),
		fmt.Sprintf("acme c-old 0 %d 9 [9]", h1),
	}, "\n")
	blocks := func() string {
		t.Helper()
		rows, err := s.r.QueryContext(ctx, `SELECT tenant_id, customer_id, minute, applied_at, first_rowid, rowids FROM event_blocks
			ORDER BY tenant_id, customer_id, minute, applied_at`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var tenant, customer, rowids string
			var minute, applied, first int64
			if err := rows.Scan(&tenant, &customer, &minute, &applied, &first, &rowids); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s %s %d %d %d %s", tenant, customer, minute, applied, first, rowids))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, "\n")
	}
	if got := blocks(); got != want {
		t.Fatalf("written blocks:\n%s\nwant:\n%s", got, want)
	}

	// A store from before 0005: events indexed by customer and time, no
	// blocks. Opening it migrates.
	for _, q := range []string{`DROP TABLE event_blocks`, `DELETE FROM schema_migrations WHERE version = 5`,
		`CREATE INDEX events_customer_time ON events(tenant_id, customer_id, time)`} {
		if _, err := s.w.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := blocks(); got != want {
		t.Fatalf("blocks built by migration 0005:\n%s\nwant:\n%s", got, want)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'events_customer_time'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("events_customer_time after 0005: %d (%v)", n, err)
	}
	var ids []string
	err = s.ScanEvents(ctx, abacus.EventFilter{TenantID: "acme", Customer: "c-old"}, func(e *abacus.Event) error {
		ids = append(ids, e.ID)
		return nil
	})
	if err != nil || fmt.Sprint(ids) != "[f g h i]" {
		t.Fatalf("scan after the migration: %v (%v)", ids, err)
	}
}
