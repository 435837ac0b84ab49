package rating

// The hot path of rating runs on this small fixed-point kernel instead of on
// apd.Context arithmetic: apd's inline coefficient holds 128 bits, but
// add/multiply chains whose results pass 64 bits reallocate, and apd's
// context rounding checks cost ~100 ns per operation. Measured on a 10-tier
// graduated price (libcompare_test.go): apd.Context 980 ns and 2 allocs/op;
// this kernel, well under that with 0 allocs. The kernel is exact by
// construction: quantities and prices are integers scaled by 10^12 (the
// definition format caps them at 12 fractional digits), products are
// integers scaled by 10^24 held in 256 bits, and every operation that could
// overflow reports it. apd remains the decimal type of every public value.

import (
	"errors"
	"math/big"
	"math/bits"

	"github.com/cockroachdb/apd/v3"
)

// Scale is the number of fractional digits quantities, unit prices and rates
// carry. Values with more significant fractional digits are rejected, never
// rounded.
const Scale = 12

// errOverflow is returned when a value does not fit the kernel's 128-bit
// (inputs) or 256-bit (products) range. No real bill comes close.
var errOverflow = errors.New("value out of range (more than 26 integer digits)")

// exact is the context for the few apd operations off the hot path: wide
// enough for any value the kernel accepts, and trapping instead of rounding.
var exact = apd.Context{
	Precision:   100,
	MaxExponent: apd.MaxExponent,
	MinExponent: apd.MinExponent,
	Traps:       apd.DefaultTraps | apd.Inexact | apd.Rounded,
}

var pow10 = [20]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// u128 is an unsigned integer; as a quantity or price it is scaled by 10^12.
type u128 struct{ hi, lo uint64 }

// u256 is an unsigned integer, little-endian words; as an amount it is
// scaled by 10^24 (or by 10^exponent once rounded).
type u256 [4]uint64

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

func (a u128) isZero() bool { return a.hi|a.lo == 0 }

// sub returns a-b; callers guarantee a >= b.
func (a u128) sub(b u128) u128 {
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	hi, _ := bits.Sub64(a.hi, b.hi, borrow)
	return u128{hi, lo}
}

func (a u128) add(b u128) (u128, bool) {
	lo, c := bits.Add64(a.lo, b.lo, 0)
	hi, c := bits.Add64(a.hi, b.hi, c)
	return u128{hi, lo}, c == 0
}

// mulSmall returns a*m and whether it fit in 128 bits.
func (a u128) mulSmall(m uint64) (u128, bool) {
	h1, l := bits.Mul64(a.lo, m)
	h2, l2 := bits.Mul64(a.hi, m)
	hi, c := bits.Add64(h1, l2, 0)
	return u128{hi, l}, h2 == 0 && c == 0
}

// divSmall returns a/d and a%d.
func (a u128) divSmall(d uint64) (u128, uint64) {
	qh, r := bits.Div64(0, a.hi, d)
	ql, r := bits.Div64(r, a.lo, d)
	return u128{qh, ql}, r
}

func (a u128) wide() u256 { return u256{a.lo, a.hi} }

// mul returns the full 256-bit product a*b.
func mul(a, b u128) u256 {
	var z u256
	h, l := bits.Mul64(a.lo, b.lo)
	z[0] = l
	z[1] = h
	h, l = bits.Mul64(a.lo, b.hi)
	var c uint64
	z[1], c = bits.Add64(z[1], l, 0)
	z[2], c = bits.Add64(h, 0, c)
	z[3] = c
	h, l = bits.Mul64(a.hi, b.lo)
	z[1], c = bits.Add64(z[1], l, 0)
	z[2], c = bits.Add64(z[2], h, c)
	z[3] += c
	h, l = bits.Mul64(a.hi, b.hi)
	z[2], c = bits.Add64(z[2], l, 0)
	z[3], _ = bits.Add64(z[3], h, c) // cannot carry out: a,b < 2^128
	return z
}

func (a u256) add(b u256) (u256, bool) {
	var z u256
	var c uint64
	z[0], c = bits.Add64(a[0], b[0], 0)
	z[1], c = bits.Add64(a[1], b[1], c)
	z[2], c = bits.Add64(a[2], b[2], c)
	z[3], c = bits.Add64(a[3], b[3], c)
	return z, c == 0
}

// sub returns a-b; callers guarantee a >= b.
func (a u256) sub(b u256) u256 {
	var z u256
	var c uint64
	z[0], c = bits.Sub64(a[0], b[0], 0)
	z[1], c = bits.Sub64(a[1], b[1], c)
	z[2], c = bits.Sub64(a[2], b[2], c)
	z[3], _ = bits.Sub64(a[3], b[3], c)
	return z
}

func (a u256) cmp(b u256) int {
	for i := 3; i >= 0; i-- {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (a u256) isZero() bool { return a[0]|a[1]|a[2]|a[3] == 0 }

// divSmall returns a/d and a%d.
func (a u256) divSmall(d uint64) (u256, uint64) {
	var q u256
	var r uint64
	for i := 3; i >= 0; i-- {
		q[i], r = bits.Div64(r, a[i], d)
	}
	return q, r
}

func (a u256) mulSmall(m uint64) (u256, bool) {
	var z u256
	var carry uint64
	for i := 0; i < 4; i++ {
		h, l := bits.Mul64(a[i], m)
		var c uint64
		z[i], c = bits.Add64(l, carry, 0)
		carry = h + c
	}
	return z, carry == 0
}

// scaleUp multiplies a by 10^k (k <= 38).
func (a u256) scaleUp(k int) (u256, bool) {
	for k > 0 {
		s := min(k, 19)
		var ok bool
		if a, ok = a.mulSmall(pow10[s]); !ok {
			return a, false
		}
		k -= s
	}
	return a, true
}

// roundDown divides a by 10^k (0 <= k <= 38) and rounds the quotient half
// up: the one rounding rule of Abacus (see docs/pricing.md, "Rounding").
// Because amounts are non-negative here, half up and half away from zero
// coincide.
func (a u256) roundDown(k int) u256 {
	if k == 0 {
		return a
	}
	// Divide in at most three steps of <= 10^19, keeping the exact remainder
	// r = r1 + r2*d1 + r3*d1*d2 to compare against half of 10^k.
	q := a
	var rem u256 // remainder as an integer < 10^k
	var mulAcc u256 = u256{1}
	left := k
	for left > 0 {
		s := min(left, 19)
		var r uint64
		q, r = q.divSmall(pow10[s])
		part, _ := mulAcc.mulSmall(r)
		rem, _ = rem.add(part)
		mulAcc, _ = mulAcc.mulSmall(pow10[s])
		left -= s
	}
	// half = 10^k / 2 = 5 * 10^(k-1)
	half, _ := u256{5}.scaleUp(k - 1)
	if rem.cmp(half) >= 0 {
		q, _ = q.add(u256{1})
	}
	return q
}

// fromDecimal converts a finite, non-negative d to an integer scaled by
// 10^Scale. It fails, never rounds, when d has more than Scale significant
// fractional digits, is negative, is not finite, or is out of range.
func fromDecimal(d *apd.Decimal) (u128, error) {
	if d.Form != apd.Finite {
		return u128{}, errors.New("not a finite number")
	}
	if d.Negative && !d.IsZero() {
		return u128{}, errors.New("must not be negative")
	}
	var c u128
	if d.Coeff.IsUint64() {
		c.lo = d.Coeff.Uint64()
	} else {
		// Rare (coefficient over 2^64): take the slow, allocating path.
		b := d.Coeff.MathBigInt()
		if b.BitLen() > 128 {
			return u128{}, errOverflow
		}
		var lo, hi big.Int
		lo.SetUint64(^uint64(0))
		lo.And(b, &lo)
		hi.Rsh(b, 64)
		c = u128{hi.Uint64(), lo.Uint64()}
	}
	e := int(d.Exponent) + Scale
	for e < 0 { // strip trailing zeros beyond 12 fractional digits, exactly
		s := min(-e, 19)
		q, r := c.divSmall(pow10[s])
		if r != 0 {
			return u128{}, errors.New("more than 12 fractional digits")
		}
		c, e = q, e+s
	}
	for e > 0 {
		s := min(e, 19)
		var ok bool
		if c, ok = c.mulSmall(pow10[s]); !ok {
			return u128{}, errOverflow
		}
		e -= s
	}
	return c, nil
}

// setDecimal stores v×10^-scale into d. It does not allocate when the
// coefficient fits in 64 bits, the case for every rounded amount below
// 10^17 major units.
func setDecimal(d *apd.Decimal, v u256, scale int) {
	d.Form = apd.Finite
	d.Negative = false
	d.Exponent = -int32(scale)
	if v[1]|v[2]|v[3] == 0 {
		d.Coeff.SetUint64(v[0])
		return
	}
	var b big.Int
	b.SetBits([]big.Word{big.Word(v[0]), big.Word(v[1]), big.Word(v[2]), big.Word(v[3])})
	d.Coeff.SetMathBigInt(&b)
}

// decimalOf returns v×10^-scale as a new apd.Decimal with trailing
// fractional zeros removed (for display; allocates).
func decimalOf(v u256, scale int) apd.Decimal {
	var d apd.Decimal
	setDecimal(&d, v, scale)
	reduce(&d)
	return d
}

// reduce strips trailing fractional zeros but never turns an integer into
// exponent form (1000, not 1E+3).
func reduce(d *apd.Decimal) {
	d.Reduce(d)
	if d.Exponent > 0 {
		var z apd.Decimal
		_, _ = exact.Quantize(&z, d, 0)
		d.Set(&z)
	}
}
