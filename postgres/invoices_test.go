package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/storetest"
)

func TestInvoiceConformance(t *testing.T) {
	storetest.ExerciseInvoices(t, storetest.InvoiceHarness{
		Open: func(t *testing.T) abacus.Store { return OpenTestStore(t) },
		// Two stores with pools of their own on one schema: two processes.
		OpenPair: func(t *testing.T) (abacus.Store, abacus.Store) {
			url := TestSchemaURL(t)
			open := func() *Store {
				s, err := Open(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() }) // before the schema is dropped
				return s
			}
			return open(), open()
		},
		Exec: func(ctx context.Context, s abacus.Store, query string) error {
			_, err := s.(*Store).pool.Exec(ctx, query)
			return err
		},
	})
}

// TestTruncateRefused: TRUNCATE skips row triggers, so the tables holding
// issued documents and number series refuse it outright.
func TestTruncateRefused(t *testing.T) {
	s := OpenTestStore(t)
	for _, table := range []string{"invoices", "credit_notes", "invoice_counters", "credit_note_counters"} {
		_, err := s.pool.Exec(context.Background(), `TRUNCATE `+table+` CASCADE`)
		if err == nil || !strings.Contains(err.Error(), "cannot be truncated") {
			t.Errorf("TRUNCATE %s: %v", table, err)
		}
	}
}
