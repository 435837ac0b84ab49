package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/storetest"
)

func TestInvoiceConformance(t *testing.T) {
	open := func(t *testing.T, path string) *Store {
		s, err := Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	storetest.ExerciseInvoices(t, storetest.InvoiceHarness{
		Open: func(t *testing.T) abacus.Store { return open(t, filepath.Join(t.TempDir(), "abacus.db")) },
		// Two stores on one file: two processes sharing an embedded
		// database meet on SQLite's file lock.
		OpenPair: func(t *testing.T) (abacus.Store, abacus.Store) {
			path := filepath.Join(t.TempDir(), "abacus.db")
			return open(t, path), open(t, path)
		},
		Exec: func(ctx context.Context, s abacus.Store, query string) error {
			_, err := s.(*Store).w.ExecContext(ctx, query)
			return err
		},
	})
}
