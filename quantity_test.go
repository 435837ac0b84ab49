package abacus

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/cockroachdb/apd/v3"
)

// TestParseQuantityIntegers: the integer fast path gives exactly the
// decimal the general parse gives (sign, coefficient, exponent), and
// leaves what it does not handle to it.
func TestParseQuantityIntegers(t *testing.T) {
	general := func(s string) (apd.Decimal, bool) {
		var d apd.Decimal
		if _, _, err := d.SetString(s); err != nil {
			return d, false
		}
		d.Reduce(&d)
		return d, true
	}
	inputs := []string{"0", "-0", "00", "-00", "007", "1", "-1", "10", "1000", "-1000", "120", "999999999999999999",
		"-999999999999999999", "100000000000000000", "1234567890123456789", "-1234567890123456789", "+5", "1e3",
		"1.50", "-", "", "1-", "--1", "1 ", " 1", "0x10", "٣", "9223372036854775807", "9223372036854775808",
		"-9223372036854775808", "9999999999999999999", "-9999999999999999999", "0000000000000000001", "000000000000000000",
		"-000000000000000000", "123456789012345678901234567890"}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		n := rng.Int64N(1 << 62)
		if rng.IntN(2) == 0 {
			n = -n
		}
		inputs = append(inputs, strconv.FormatInt(n/int64(1+rng.IntN(1<<20)), 10))
	}
	for _, s := range inputs {
		got, err := ParseQuantity(s)
		want, ok := general(s)
		if !ok {
			if err == nil {
				t.Errorf("ParseQuantity(%q) = %s; want an error", s, got.String())
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseQuantity(%q): %v", s, err)
			continue
		}
		if got.Form != want.Form || got.Negative != want.Negative || got.Exponent != want.Exponent ||
			got.Coeff.String() != want.Coeff.String() || got.String() != want.String() {
			t.Errorf("ParseQuantity(%q) = %+v (%s); want %+v (%s)", s, got, got.String(), want, want.String())
		}
	}
}
