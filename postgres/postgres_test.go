package postgres_test

import (
	"testing"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/postgres"
	"github.com/abacus-billing/abacus/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Exercise(t, func(t *testing.T) abacus.Store { return postgres.OpenTestStore(t) })
}
