package rating

import (
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// Fraction is a proration fraction Num/Den with 0 <= Num <= Den and Den > 0,
// kept as a ratio of whole days so that 10/31 stays exact (it has no finite
// decimal form).
type Fraction struct {
	Num, Den int64
}

func (f Fraction) String() string { return fmt.Sprintf("%d/%d", f.Num, f.Den) }

// Validate reports whether f is a usable proration fraction.
func (f Fraction) Validate() error {
	if f.Den <= 0 || f.Num < 0 || f.Num > f.Den {
		return fmt.Errorf("proration %d/%d: want 0 <= numerator <= denominator and denominator > 0", f.Num, f.Den)
	}
	return nil
}

// Interval is the half-open time range [Start, End).
type Interval struct {
	Start, End time.Time
}

// ProrationFraction returns the share of period that part covers, by
// calendar day in the customer's time zone loc:
//
//	fraction = days(part) / days(period)
//	days([a, b)) = localDate(b) - localDate(a), in whole calendar days
//
// where localDate is the calendar date of an instant in loc. A day is a day
// whether it has 23, 24 or 25 hours (DST), and months count their real
// length (28 to 31 days). The day on which a change happens belongs to the
// interval that starts that day, so the intervals of a split period add up
// to exactly the period (no day billed twice, none lost).
//
// Errors: a nil loc; an empty or reversed interval; part not inside period;
// a period shorter than one calendar day.
func ProrationFraction(period, part Interval, loc *time.Location) (Fraction, error) {
	if loc == nil {
		return Fraction{}, errors.New("proration: time zone is required")
	}
	if !period.Start.Before(period.End) {
		return Fraction{}, fmt.Errorf("proration: period start %s is not before its end %s", period.Start, period.End)
	}
	if part.End.Before(part.Start) {
		return Fraction{}, fmt.Errorf("proration: interval start %s is after its end %s", part.Start, part.End)
	}
	if part.Start.Before(period.Start) || part.End.After(period.End) {
		return Fraction{}, fmt.Errorf("proration: interval [%s, %s) is not inside the period [%s, %s)",
			part.Start, part.End, period.Start, period.End)
	}
	den := localDay(period.End, loc) - localDay(period.Start, loc)
	if den <= 0 {
		return Fraction{}, errors.New("proration: the period is shorter than one calendar day")
	}
	num := localDay(part.End, loc) - localDay(part.Start, loc)
	return Fraction{Num: num, Den: den}, nil
}

// localDay numbers the calendar date of t in loc (days since 1970-01-01),
// independent of the length of any day.
func localDay(t time.Time, loc *time.Location) int64 {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// Prorate returns amount × days(part)/days(period) (see ProrationFraction),
// rounded once, half up, to cur's minor unit, and the fraction used. The
// amount must be non-negative with at most 12 fractional digits.
func Prorate(amount *apd.Decimal, cur Currency, period, part Interval, loc *time.Location) (apd.Decimal, Fraction, error) {
	f, err := ProrationFraction(period, part, loc)
	if err != nil {
		return apd.Decimal{}, f, err
	}
	v, err := fromDecimal(amount)
	if err != nil {
		return apd.Decimal{}, f, fmt.Errorf("proration amount %s: %w", amount.Text('f'), err)
	}
	minor, err := prorate(v, f, cur.Exponent)
	if err != nil {
		return apd.Decimal{}, f, err
	}
	var out apd.Decimal
	setDecimal(&out, minor, cur.Exponent)
	return out, f, nil
}

// prorate returns v (scaled by 10^12) × f in minor units of a currency with
// exponent exp, rounded half up. It allocates (big.Int); proration is not
// on the per-event hot path.
func prorate(v u128, f Fraction, exp int) (u256, error) {
	if err := f.Validate(); err != nil {
		return u256{}, err
	}
	var n, d, r, ten big.Int
	n.SetUint64(v.hi)
	n.Lsh(&n, 64)
	n.Or(&n, new(big.Int).SetUint64(v.lo))
	n.Mul(&n, big.NewInt(f.Num))
	ten.Exp(big.NewInt(10), big.NewInt(int64(Scale-exp)), nil)
	d.Mul(big.NewInt(f.Den), &ten)
	n.QuoRem(&n, &d, &r)
	if r.Lsh(&r, 1).Cmp(&d) >= 0 {
		n.Add(&n, big.NewInt(1))
	}
	var out u256
	words := n.Bits()
	if len(words) > 4 {
		return u256{}, errOverflow
	}
	for i, w := range words {
		out[i] = uint64(w)
	}
	return out, nil
}
