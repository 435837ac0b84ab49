package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/storetest"
)

// TestEventBlocks: an apply transaction lists the events it stored in one
// block per tenant, customer and minute of event time (a repeat is not
// listed; two transactions with one stamp write a block each), and
// migration 0005 builds the same blocks from the events of a store that had
// none, but one per stamp. Scans read the same events either way. The
// SQLite store's TestEventBlocks is the same test over rowids.
func TestEventBlocks(t *testing.T) {
	ctx := context.Background()
	url := TestSchemaURL(t)
	s, err := Open(ctx, url)
	must(t, err)
	t.Cleanup(func() { s.Close() })
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
		ev("a", "c-1", 0), ev("b", "c-2", 0), ev("e", "c-1", 5*m+1), ev("c", "c-1", m-1), ev("d", "c-1", m),
		epoch("f", -int64(m)-1), epoch("g", -int64(m)), epoch("h", -1), epoch("i", 0), ev("B", "c-1", 2))
	apply(base.Add(2*time.Hour), ev("a", "c-1", 0), ev("k", "c-1", 30*time.Second))
	apply(base.Add(2*time.Hour), ev("j", "c-1", 40*time.Second))

	// Ids are listed bytewise ("B" before "a"), and the repeated "a" is
	// not listed again.
	h1, h2 := base.Add(time.Hour).UnixNano(), base.Add(2*time.Hour).UnixNano()
	b0 := base.Unix() / 60
	rest := []string{
		fmt.Sprintf("acme c-1 %d %d d [d]", b0+1, h1),
		fmt.Sprintf("acme c-1 %d %d e [e]", b0+5, h1),
		fmt.Sprintf("acme c-2 %d %d b [b]", b0, h1),
		fmt.Sprintf("acme c-old -2 %d f [f]", h1),
		fmt.Sprintf("acme c-old -1 %d g [g h]", h1),
		fmt.Sprintf("acme c-old 0 %d i [i]", h1),
	}
	written := strings.Join(append([]string{
		fmt.Sprintf("acme c-1 %d %d B [B a c]", b0, h1),
		fmt.Sprintf("acme c-1 %d %d j [j]", b0, h2),
		fmt.Sprintf("acme c-1 %d %d k [k]", b0, h2),
	}, rest...), "\n")
	migrated := strings.Join(append([]string{
		fmt.Sprintf("acme c-1 %d %d B [B a c]", b0, h1),
		fmt.Sprintf("acme c-1 %d %d j [j k]", b0, h2),
	}, rest...), "\n")
	blocks := func() string {
		t.Helper()
		rows, err := s.pool.Query(ctx, `SELECT tenant_id, customer_id, minute, applied_at, first_id, ids FROM event_blocks
			ORDER BY tenant_id, customer_id, minute, applied_at, first_id`)
		must(t, err)
		defer rows.Close()
		var out []string
		for rows.Next() {
			var tenant, customer, first string
			var minute, applied int64
			var ids []string
			must(t, rows.Scan(&tenant, &customer, &minute, &applied, &first, &ids))
			out = append(out, fmt.Sprintf("%s %s %d %d %s %v", tenant, customer, minute, applied, first, ids))
		}
		must(t, rows.Err())
		return strings.Join(out, "\n")
	}
	if got := blocks(); got != written {
		t.Fatalf("written blocks:\n%s\nwant:\n%s", got, written)
	}
	scans := func() {
		t.Helper()
		for customer, want := range map[string]string{"c-1": "[a B k j c d e]", "c-old": "[f g h i]"} {
			var ids []string
			must(t, s.ScanEvents(ctx, abacus.EventFilter{TenantID: "acme", Customer: customer}, func(e *abacus.Event) error {
				ids = append(ids, e.ID)
				return nil
			}))
			if got := fmt.Sprint(ids); got != want {
				t.Errorf("scan of %s: %s, want %s", customer, got, want)
			}
		}
	}
	scans()

	// A store from before 0005: events indexed by customer and time, no
	// blocks. Opening it migrates.
	for _, q := range []string{`DROP TABLE event_blocks`, `DELETE FROM schema_migrations WHERE version = 5`,
		`CREATE INDEX events_customer_time ON events(tenant_id, customer_id, time)`} {
		_, err := s.pool.Exec(ctx, q)
		must(t, err)
	}
	s.Close()
	s, err = Open(ctx, url)
	must(t, err)
	if got := blocks(); got != migrated {
		t.Fatalf("blocks built by migration 0005:\n%s\nwant:\n%s", got, migrated)
	}
	var n int
	must(t, s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'events_customer_time'`).Scan(&n))
	if n != 0 {
		t.Fatalf("events_customer_time after 0005: %d", n)
	}
	scans()
}
