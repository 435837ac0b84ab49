package rating

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

// Property tests: random prices and usages, checked against an independent
// oracle in math/big.Rat. propertyCases per model run in the normal test
// run; -short cuts them down.
const propertyCases = 100_000

var propertyCurrencies = []string{"JPY", "USD", "KWD"} // exponents 0, 2, 3

// randDec returns a random non-negative decimal string with up to maxInt
// integer digits and up to frac fractional digits.
func randDec(r *rand.Rand, maxInt, frac int) string {
	i := r.Int64N(pow10i(maxInt))
	if frac == 0 {
		return fmt.Sprint(i)
	}
	f := r.IntN(frac + 1)
	if f == 0 {
		return fmt.Sprint(i)
	}
	return fmt.Sprintf("%d.%0*d", i, f, r.Int64N(pow10i(f)))
}

func pow10i(n int) int64 {
	v := int64(1)
	for range n {
		v *= 10
	}
	return v
}

func rat(s string) *big.Rat {
	x, ok := new(big.Rat).SetString(s)
	if !ok {
		panic(s)
	}
	return x
}

// roundHalfUp rounds a non-negative x to exp fractional digits, the oracle
// of the one rounding rule.
func roundHalfUp(x *big.Rat, exp int) *big.Rat {
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)
	n := new(big.Int).Mul(x.Num(), scale)
	n.Mul(n, big.NewInt(2))
	n.Add(n, x.Denom())
	d := new(big.Int).Mul(x.Denom(), big.NewInt(2))
	n.Div(n, d) // floor((2·x·10^e + 1)/2)
	return new(big.Rat).SetFrac(n, scale)
}

func minR(a, b *big.Rat) *big.Rat {
	if a.Cmp(b) < 0 {
		return a
	}
	return b
}

type randomPrice struct {
	def      *Definition
	oracle   func(q, amt *big.Rat) *big.Rat // exact charge before rounding
	tierTops []string                       // up_to values, for edge quantities
}

func randomTiered(r *rand.Rand, m Model) randomPrice {
	n := 1 + r.IntN(10)
	d := &Definition{Version: 1, Model: m}
	var tops []*big.Rat
	var topStr []string
	prev := big.NewRat(0, 1)
	for i := range n {
		t := Tier{}
		if i < n-1 {
			inc := randDec(r, 4, 3)
			if rat(inc).Sign() == 0 {
				inc = "1"
			}
			top := new(big.Rat).Add(prev, rat(inc))
			s := top.FloatString(3)
			t.UpTo = MustNumber(s)
			tops = append(tops, rat(s))
			topStr = append(topStr, s)
			prev = rat(s)
		}
		if m == GraduatedPercentage {
			t.Rate = MustNumber(randDec(r, 2, 10))
		} else {
			t.UnitPrice = MustNumber(randDec(r, 3, 12))
		}
		if r.IntN(3) == 0 {
			t.FlatPrice = MustNumber(randDec(r, 3, 12))
		}
		d.Tiers = append(d.Tiers, t)
	}
	price := func(i int) *big.Rat {
		if m == GraduatedPercentage {
			return new(big.Rat).Quo(rat(d.Tiers[i].Rate.String()), big.NewRat(100, 1))
		}
		return rat(d.Tiers[i].UnitPrice.String())
	}
	flat := func(i int) *big.Rat {
		if d.Tiers[i].FlatPrice == nil {
			return new(big.Rat)
		}
		return rat(d.Tiers[i].FlatPrice.String())
	}
	oracle := func(q, amt *big.Rat) *big.Rat {
		if m == GraduatedPercentage {
			q = amt
		}
		total := new(big.Rat)
		lo := new(big.Rat)
		for i := range d.Tiers {
			inTier := i == len(tops) || q.Cmp(tops[i]) <= 0
			if m == Volume {
				if inTier {
					return total.Add(new(big.Rat).Mul(q, price(i)), flat(i))
				}
				continue
			}
			// graduated: every tier independently: units in (lo, hi]
			if i > 0 && q.Cmp(lo) <= 0 {
				break
			}
			hi := q
			if i < len(tops) {
				hi = minR(q, tops[i])
			}
			units := new(big.Rat).Sub(hi, lo)
			total.Add(total, new(big.Rat).Mul(units, price(i)))
			total.Add(total, flat(i))
			if i < len(tops) {
				lo = tops[i]
			}
		}
		return total
	}
	return randomPrice{def: d, oracle: oracle, tierTops: topStr}
}

func randomSimple(r *rand.Rand, m Model) randomPrice {
	d := &Definition{Version: 1, Model: m}
	switch m {
	case PerUnit:
		d.UnitPrice = MustNumber(randDec(r, 3, 12))
		if r.IntN(2) == 0 {
			d.Package = &Transform{DivideBy: MustNumber(fmt.Sprint(1 + r.IntN(5000))), Round: []string{"up", "down"}[r.IntN(2)]}
		}
	case Package:
		d.PackageSize = MustNumber(fmt.Sprint(1 + r.IntN(5000)))
		d.PackagePrice = MustNumber(randDec(r, 3, 12))
	case Percentage:
		d.Rate = MustNumber(randDec(r, 2, 10))
		d.FixedFee = MustNumber(randDec(r, 1, 12))
		if r.IntN(2) == 0 {
			d.FreeAmount = MustNumber(randDec(r, 3, 2))
		}
		fe := int64(r.IntN(5))
		d.FreeEvents = &fe
	}
	oracle := func(q, amt *big.Rat) *big.Rat {
		switch m {
		case Percentage:
			charged := new(big.Rat).Sub(amt, rat(or(numStr(d.FreeAmount), "0")))
			if charged.Sign() < 0 {
				charged.SetInt64(0)
			}
			return charged // caller adds the fee part; see below
		}
		var size *big.Rat
		var up bool
		var unit *big.Rat
		if m == Package {
			size, up, unit = rat(d.PackageSize.String()), true, rat(d.PackagePrice.String())
		} else if unit = rat(d.UnitPrice.String()); d.Package != nil {
			size, up = rat(d.Package.DivideBy.String()), d.Package.Round == "up"
		}
		if size != nil {
			x := new(big.Rat).Quo(q, size)
			n := new(big.Int).Quo(x.Num(), x.Denom())
			if up && !x.IsInt() {
				n.Add(n, big.NewInt(1))
			}
			q = new(big.Rat).SetInt(n)
		}
		return new(big.Rat).Mul(q, unit)
	}
	return randomPrice{def: d, oracle: oracle}
}

func numStr(n *Number) string {
	if n == nil {
		return ""
	}
	return n.String()
}

// addModifiers gives some prices free units, a minimum, a maximum and
// discounts, all in minor units of cur.
func addModifiers(r *rand.Rand, d *Definition, exp int) {
	if d.Model == Percentage {
		return
	}
	if r.IntN(3) == 0 {
		d.FreeUnits = MustNumber(randDec(r, 3, 4))
	}
	if r.IntN(3) == 0 {
		d.Minimum = MustNumber(randDec(r, 4, exp))
	}
	if r.IntN(3) == 0 {
		d.Maximum = MustNumber(randDec(r, 6, exp))
		if d.Minimum != nil && d.Minimum.Cmp(&d.Maximum.Decimal) > 0 {
			d.Maximum = d.Minimum
		}
	}
	for range r.IntN(3) {
		if r.IntN(2) == 0 {
			d.Discounts = append(d.Discounts, Discount{Percent: MustNumber(fmt.Sprintf("%d.%02d", r.IntN(100), 1+r.IntN(99)))})
		} else {
			d.Discounts = append(d.Discounts, Discount{Amount: MustNumber(randDec(r, 3, exp))})
		}
	}
}

// expectedTotal applies the modifiers to the exact charge with rationals.
func expectedTotal(d *Definition, charge *big.Rat, exp int) (*big.Rat, *big.Rat) {
	line := roundHalfUp(charge, exp)
	sub := new(big.Rat).Set(line)
	if d.Minimum != nil && sub.Cmp(rat(d.Minimum.String())) < 0 {
		sub = rat(d.Minimum.String())
	}
	if d.Maximum != nil && sub.Cmp(rat(d.Maximum.String())) > 0 {
		sub = rat(d.Maximum.String())
	}
	for _, dc := range d.Discounts {
		var off *big.Rat
		if dc.Percent != nil {
			off = roundHalfUp(new(big.Rat).Mul(sub, new(big.Rat).Quo(rat(dc.Percent.String()), big.NewRat(100, 1))), exp)
		} else {
			off = rat(dc.Amount.String())
		}
		sub = new(big.Rat).Sub(sub, minR(off, sub))
	}
	return line, sub
}

func TestPropertiesAgainstOracle(t *testing.T) {
	n := propertyCases
	if testing.Short() || raceEnabled {
		n = 5_000
	}
	models := []Model{Graduated, Volume, GraduatedPercentage, PerUnit, Package, Percentage}
	for mi, m := range models {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(mi)+1, 42))
			var out Result
			for i := 0; i < n; i++ {
				cur := propertyCurrencies[i%len(propertyCurrencies)]
				exp := iso4217[cur]
				var rp randomPrice
				switch m {
				case Graduated, Volume, GraduatedPercentage:
					rp = randomTiered(r, m)
				default:
					rp = randomSimple(r, m)
				}
				rp.def.Currency = cur
				addModifiers(r, rp.def, exp)
				p, err := Compile(rp.def)
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				qs := randDec(r, 5, 12)
				if len(rp.tierTops) > 0 && r.IntN(4) == 0 { // tier edges
					qs = rp.tierTops[r.IntN(len(rp.tierTops))]
				}
				if r.IntN(50) == 0 {
					qs = "0"
				}
				u := Usage{AmountCurrency: cur, Events: int64(r.IntN(1000))}
				u.Quantity.Set(&MustNumber(qs).Decimal)
				u.Amount.Set(&MustNumber(qs).Decimal)
				if err := p.Rate(&u, &out); err != nil {
					t.Fatalf("case %d: rate %s: %v", i, qs, err)
				}
				q := rat(qs)
				if rp.def.FreeUnits != nil {
					q.Sub(q, rat(rp.def.FreeUnits.String()))
					if q.Sign() < 0 {
						q.SetInt64(0)
					}
				}
				charge := rp.oracle(q, rat(qs))
				if m == Percentage {
					rate := new(big.Rat).Quo(rat(rp.def.Rate.String()), big.NewRat(100, 1))
					charge.Mul(charge, rate)
					ev := max(0, u.Events-*rp.def.FreeEvents)
					charge.Add(charge, new(big.Rat).Mul(big.NewRat(ev, 1), rat(rp.def.FixedFee.String())))
				}
				line, total := expectedTotal(rp.def, charge, exp)
				gotExact := out.Lines[0].Exact()
				if rat(gotExact.Text('f')).Cmp(charge) != 0 {
					t.Fatalf("case %d (%s q=%s): exact charge %s, oracle %s\n%+v", i, cur, qs, gotExact.Text('f'), charge.FloatString(30), describe(rp.def))
				}
				// rounding moves an amount by at most half a minor unit
				half := new(big.Rat).SetFrac(big.NewInt(1), new(big.Int).Mul(big.NewInt(2), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
				if diff := new(big.Rat).Sub(rat(out.Lines[0].Amount.Text('f')), charge); new(big.Rat).Abs(diff).Cmp(half) > 0 {
					t.Fatalf("case %d: rounding moved %s by %s", i, charge.FloatString(30), diff.FloatString(30))
				}
				if rat(out.Lines[0].Amount.Text('f')).Cmp(line) != 0 || rat(out.Total.Text('f')).Cmp(total) != 0 {
					t.Fatalf("case %d (%s q=%s): line %s total %s, oracle line %s total %s\n%s",
						i, cur, qs, out.Lines[0].Amount.Text('f'), out.Total.Text('f'), line.FloatString(exp), total.FloatString(exp), describe(rp.def))
				}
				checkTotalIsSumOfLines(t, &out)
			}
		})
	}
}

func describe(d *Definition) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s free=%s min=%s max=%s", d.Model, d.Currency, numStr(d.FreeUnits), numStr(d.Minimum), numStr(d.Maximum))
	for _, t := range d.Tiers {
		fmt.Fprintf(&b, " [up_to=%s unit=%s rate=%s flat=%s]", numStr(t.UpTo), numStr(t.UnitPrice), numStr(t.Rate), numStr(t.FlatPrice))
	}
	return b.String()
}

// TestVolumeMonotoneWithinTier: inside one tier, more units never cost less
// (exactly and after rounding).
func TestVolumeMonotoneWithinTier(t *testing.T) {
	n := propertyCases
	if testing.Short() || raceEnabled {
		n = 5_000
	}
	r := rand.New(rand.NewPCG(7, 7))
	var a, b Result
	for i := 0; i < n; i++ {
		rp := randomTiered(r, Volume)
		rp.def.Currency = propertyCurrencies[i%3]
		p, err := Compile(rp.def)
		if err != nil {
			t.Fatal(err)
		}
		q1, q2 := rat(randDec(r, 5, 12)), rat(randDec(r, 5, 12))
		if q1.Cmp(q2) > 0 {
			q1, q2 = q2, q1
		}
		var u1, u2 Usage
		u1.Quantity.Set(&MustNumber(q1.FloatString(12)).Decimal)
		u2.Quantity.Set(&MustNumber(q2.FloatString(12)).Decimal)
		if err := p.Rate(&u1, &a); err != nil {
			t.Fatal(err)
		}
		if err := p.Rate(&u2, &b); err != nil {
			t.Fatal(err)
		}
		if a.Steps[0].Tier != b.Steps[0].Tier {
			continue // different tiers: volume pricing may legitimately drop
		}
		ea, eb := a.Lines[0].Exact(), b.Lines[0].Exact()
		if ea.Cmp(&eb) > 0 || a.Total.Cmp(&b.Total) > 0 {
			t.Fatalf("q=%s costs %s but q=%s costs %s in the same tier", q1.FloatString(12), ea.String(), q2.FloatString(12), eb.String())
		}
	}
}
