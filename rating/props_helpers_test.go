package rating

import (
	"testing"

	"github.com/cockroachdb/apd/v3"
)

// checkTotalIsSumOfLines asserts the invariant invoices rely on.
func checkTotalIsSumOfLines(t testing.TB, r *Result) {
	t.Helper()
	var sum apd.Decimal
	for i := range r.Lines {
		if _, err := exact.Add(&sum, &sum, &r.Lines[i].Amount); err != nil {
			t.Fatal(err)
		}
		if r.Lines[i].Amount.Exponent != -int32(r.Currency.Exponent) {
			t.Fatalf("line %d amount %s not in minor units of %s", i, r.Lines[i].Amount.String(), r.Currency.Code)
		}
	}
	if sum.Cmp(&r.Total) != 0 || r.Total.Sign() < 0 {
		t.Fatalf("total %s != sum of lines %s (or negative)", r.Total.String(), sum.String())
	}
}
