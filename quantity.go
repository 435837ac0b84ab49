package abacus

import (
	"github.com/cockroachdb/apd/v3"
)

// Quantities are apd decimals: exact, arbitrary precision, with the
// coefficient stored inline up to 128 bits so that the common case does not
// allocate. Arithmetic on quantities goes through Exact, which refuses to
// round: a result that would need more than 64 significant digits is an
// error, never a silently rounded number.
//
// The choice is recorded in docs/ARCHITECTURE.md ("Quantities").

// Exact is the arithmetic context for quantities.
var Exact = func() *apd.Context {
	c := apd.BaseContext.WithPrecision(64)
	c.Traps = apd.DefaultTraps | apd.Inexact | apd.Rounded
	return c
}()

// MaxQuantityScale is the number of fractional digits a quantity may carry.
const MaxQuantityScale = 12

// ParseQuantity parses a decimal literal (a JSON number's text or a numeric
// string) exactly. It rejects NaN, infinities, more than MaxQuantityScale
// fractional digits, and magnitudes of 10^30 or more.
func ParseQuantity(s string) (apd.Decimal, error) {
	var d apd.Decimal
	if n, ok := smallInteger(s); ok {
		// Most values are plain integers (tokens, bytes, calls):
		// SetString's general parse was 85% of ParseQuantity.
		d.SetInt64(n)
		d.Reduce(&d)
		return d, nil
	}
	if _, _, err := d.SetString(s); err != nil {
		return d, Errorf(EINVALID, "%q is not a decimal number", s)
	}
	if d.Form != apd.Finite {
		return d, Errorf(EINVALID, "%q is not a finite number", s)
	}
	if d.Exponent < -MaxQuantityScale {
		// Trailing zeros beyond the scale are harmless: 1.50000000000000 is 1.5.
		var r apd.Decimal
		if _, err := Exact.Quantize(&r, &d, -MaxQuantityScale); err != nil {
			return d, Errorf(EINVALID, "%q has more than %d fractional digits", s, MaxQuantityScale)
		}
		d = r
	}
	if d.NumDigits()+int64(d.Exponent) > 30 {
		return d, Errorf(EINVALID, "%q is too large (at most 30 integer digits)", s)
	}
	d.Reduce(&d)
	return d, nil
}

// smallInteger parses s when it is an integer of at most 18 digits (so
// that it fits an int64) with an optional minus sign: for these, SetInt64
// followed by Reduce gives the decimal SetString followed by Reduce gives
// (Reduce makes every zero positive, "-0" included).
func smallInteger(s string) (int64, bool) {
	digits := s
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if len(digits) < len(s) {
		n = -n
	}
	return n, true
}

// Merge folds o into d: counts and sums add, min and max widen, and the
// latest value is the one with the greater (LatestTime, LatestID). Keys are
// not compared.
func (d *RollupDelta) Merge(o *RollupDelta) error {
	d.Count += o.Count
	if !o.HasValue {
		return nil
	}
	if !d.HasValue {
		d.HasValue = true
		d.Sum.Set(&o.Sum)
		d.Min.Set(&o.Min)
		d.Max.Set(&o.Max)
		d.Latest.Set(&o.Latest)
		d.LatestTime, d.LatestID = o.LatestTime, o.LatestID
		return nil
	}
	if _, err := Exact.Add(&d.Sum, &d.Sum, &o.Sum); err != nil {
		return err
	}
	if o.Min.Cmp(&d.Min) < 0 {
		d.Min.Set(&o.Min)
	}
	if o.Max.Cmp(&d.Max) > 0 {
		d.Max.Set(&o.Max)
	}
	if o.LatestTime > d.LatestTime || (o.LatestTime == d.LatestTime && o.LatestID > d.LatestID) {
		d.Latest.Set(&o.Latest)
		d.LatestTime, d.LatestID = o.LatestTime, o.LatestID
	}
	return nil
}
