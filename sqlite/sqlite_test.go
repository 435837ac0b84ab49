package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/sqlite"
	"github.com/abacus-billing/abacus/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Exercise(t, func(t *testing.T) abacus.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "abacus.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
