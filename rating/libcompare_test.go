package rating

// This file keeps the measurement that chose the decimal library (see
// docs/ARCHITECTURE.md, "Money and rating"): the same 10-tier graduated
// computation written against each candidate, plus the exactness check that
// disqualifies a fixed-width library for 12×12 fractional-digit products.

import (
	"testing"

	"github.com/cockroachdb/apd/v3"
	gv "github.com/govalues/decimal"
	ss "github.com/shopspring/decimal"
)

var libTierUpTo = []string{"1000", "2000", "3000", "4000", "5000", "6000", "7000", "8000", "9000"}
var libTierPrice = []string{"0.123456789012", "0.11", "0.1", "0.09", "0.08", "0.07", "0.06", "0.05", "0.04", "0.030000000001"}

const libQty = "1234567.123456789012"

func BenchmarkLibGraduatedAPD(b *testing.B) {
	ctx := apd.BaseContext.WithPrecision(80)
	ctx.Traps = apd.DefaultTraps | apd.Inexact | apd.Rounded
	up := make([]apd.Decimal, len(libTierUpTo))
	pr := make([]apd.Decimal, len(libTierPrice))
	for i, s := range libTierUpTo {
		up[i].SetString(s)
	}
	for i, s := range libTierPrice {
		pr[i].SetString(s)
	}
	var q apd.Decimal
	q.SetString(libQty)
	b.ReportAllocs()
	var total, prev, inTier, line, hi apd.Decimal
	for b.Loop() {
		total.SetInt64(0)
		prev.SetInt64(0)
		for i := range pr {
			if i < len(up) && q.Cmp(&up[i]) > 0 {
				hi.Set(&up[i])
			} else {
				hi.Set(&q)
			}
			ctx.Sub(&inTier, &hi, &prev)
			ctx.Mul(&line, &inTier, &pr[i])
			ctx.Add(&total, &total, &line)
			if i >= len(up) || q.Cmp(&up[i]) <= 0 {
				break
			}
			prev.Set(&up[i])
		}
	}
	if total.String() != "37490.470493941237483456789012" {
		b.Fatal(total.String())
	}
}

func BenchmarkLibGraduatedGovalues(b *testing.B) {
	up := make([]gv.Decimal, len(libTierUpTo))
	pr := make([]gv.Decimal, len(libTierPrice))
	for i, s := range libTierUpTo {
		up[i] = gv.MustParse(s)
	}
	for i, s := range libTierPrice {
		pr[i] = gv.MustParse(s)
	}
	q := gv.MustParse(libQty)
	b.ReportAllocs()
	var total gv.Decimal
	for b.Loop() {
		total = gv.Zero
		prev := gv.Zero
		for i := range pr {
			hi := q
			if i < len(up) && q.Cmp(up[i]) > 0 {
				hi = up[i]
			}
			inTier, _ := hi.Sub(prev)
			line, _ := inTier.Mul(pr[i])
			total, _ = total.Add(line)
			if i >= len(up) || q.Cmp(up[i]) <= 0 {
				break
			}
			prev = up[i]
		}
	}
	b.Logf("govalues total %s (exact is 37490.470493941237483456789012)", total)
}

func BenchmarkLibGraduatedShopspring(b *testing.B) {
	up := make([]ss.Decimal, len(libTierUpTo))
	pr := make([]ss.Decimal, len(libTierPrice))
	for i, s := range libTierUpTo {
		up[i] = ss.RequireFromString(s)
	}
	for i, s := range libTierPrice {
		pr[i] = ss.RequireFromString(s)
	}
	q := ss.RequireFromString(libQty)
	b.ReportAllocs()
	var total ss.Decimal
	for b.Loop() {
		total = ss.Zero
		prev := ss.Zero
		for i := range pr {
			hi := q
			if i < len(up) && q.Cmp(up[i]) > 0 {
				hi = up[i]
			}
			total = total.Add(hi.Sub(prev).Mul(pr[i]))
			if i >= len(up) || q.Cmp(up[i]) <= 0 {
				break
			}
			prev = up[i]
		}
	}
	if total.String() != "37490.470493941237483456789012" {
		b.Fatal(total.String())
	}
}
