package rating

import (
	"errors"
	"fmt"
	"strings"
)

// Rate prices usage u and writes the amount and its breakdown into out,
// replacing what out held. It makes no heap allocation once out's slices
// have grown to the price's size (the second call with the same Result), so
// callers that rate many customers reuse one Result per goroutine.
//
// Rating is exact: each step is computed without rounding, and each invoice
// line is rounded once, half up, to the currency's minor unit; out.Total is
// the sum of the rounded lines. Errors (out is then unspecified): a quantity
// or amount that is negative, has more than 12 fractional digits or is out
// of range; an amount in another currency; per-event amounts missing or
// inconsistent when a percentage price has min_fee/max_fee; an invalid
// Proration.
func (p *Price) Rate(u *Usage, out *Result) error {
	out.reset(p)
	var amt u256
	var err error
	switch p.model {
	case Flat:
		return p.rateFlat(u, out)
	case PerUnit, Package:
		amt, err = p.ratePerUnit(u, out)
	case Graduated, Volume:
		var q u128
		if q, err = p.quantity(u, out); err == nil {
			amt, err = p.rateTiers(q, out)
		}
	case GraduatedPercentage:
		var a u128
		if a, err = p.amount(u); err == nil {
			amt, err = p.rateTiers(a, out)
		}
	case Percentage:
		amt, err = p.ratePercentage(u, out)
	}
	if err != nil {
		return err
	}
	exp := p.currency.Exponent
	out.addLine(LineCharge, "", amt, amt.roundDown(2*Scale-exp), false)
	return p.finish(u, out)
}

// quantity reads the usage quantity and subtracts the free units, adding a
// breakdown row for them.
func (p *Price) quantity(u *Usage, out *Result) (u128, error) {
	q, err := fromDecimal(&u.Quantity)
	if err != nil {
		return u128{}, fmt.Errorf("quantity %s: %w", u.Quantity.Text('f'), err)
	}
	if p.free.isZero() {
		return q, nil
	}
	free := p.free
	if q.cmp(free) < 0 {
		free = q
	}
	out.addStep(Step{Kind: StepFreeUnits, Tier: -1, quantity: free})
	return q.sub(free), nil
}

// amount reads the summed amount of a percentage model.
func (p *Price) amount(u *Usage) (u128, error) {
	if !strings.EqualFold(u.AmountCurrency, p.currency.Code) {
		if u.AmountCurrency == "" {
			return u128{}, fmt.Errorf("amount: currency is required (price is in %s)", p.currency.Code)
		}
		return u128{}, fmt.Errorf("amount: currency %s does not match the price currency %s (no conversion is done)", u.AmountCurrency, p.currency.Code)
	}
	a, err := fromDecimal(&u.Amount)
	if err != nil {
		return u128{}, fmt.Errorf("amount %s: %w", u.Amount.Text('f'), err)
	}
	return a, nil
}

func (p *Price) rateFlat(u *Usage, out *Result) error {
	exp := p.currency.Exponent
	amt := p.flat.wide()
	amt, _ = amt.scaleUp(Scale) // flat < 2^128, so < 2^256 after ×10^12
	minor := amt.roundDown(2*Scale - exp)
	if u.Proration != nil {
		var err error
		if minor, err = prorate(p.flat, *u.Proration, exp); err != nil {
			return err
		}
		amt, _ = minor.scaleUp(2*Scale - exp)
	}
	out.addStep(Step{Kind: StepFlat, Tier: -1, quantity: u128{lo: pow10[Scale]}, flat: p.flat, amount: amt})
	out.addLine(LineCharge, "", amt, minor, false)
	return p.finish(u, out)
}

func (p *Price) ratePerUnit(u *Usage, out *Result) (u256, error) {
	q, err := p.quantity(u, out)
	if err != nil {
		return u256{}, err
	}
	if p.divBy == 0 {
		amt := mul(q, p.unit)
		out.addStep(Step{Kind: StepUnits, Tier: -1, quantity: q, unit: p.unit, amount: amt})
		return amt, nil
	}
	whole, frac := q.divSmall(pow10[Scale])
	blocks, rem := whole.divSmall(p.divBy)
	if p.roundUp && (rem != 0 || frac != 0) {
		blocks, _ = blocks.add(u128{lo: 1}) // blocks <= whole/1 < 2^128 - 1
	}
	blocks, ok := blocks.mulSmall(pow10[Scale])
	if !ok {
		return u256{}, fmt.Errorf("quantity: %w", errOverflow)
	}
	amt := mul(blocks, p.unit)
	out.addStep(Step{Kind: StepPackages, Tier: -1, quantity: blocks, unit: p.unit, amount: amt})
	return amt, nil
}

// rateTiers prices q with the graduated or volume rule. The first tier is
// always entered (a zero quantity lies in it, so its flat_price is charged);
// tier i > 0 is entered when q exceeds tiers[i-1].up_to.
func (p *Price) rateTiers(q u128, out *Result) (u256, error) {
	var total u256
	var prev u128
	for i := range p.tiers {
		t := &p.tiers[i]
		last := t.open || q.cmp(t.upTo) <= 0
		if p.model == Volume && !last {
			prev = t.upTo
			continue
		}
		inTier := q
		if p.model != Volume {
			hi := q
			if !last {
				hi = t.upTo
			}
			inTier = hi.sub(prev)
		}
		flat, _ := t.flat.wide().scaleUp(Scale)
		amt, _ := mul(inTier, t.unit).add(flat) // both < 2^255
		out.addStep(Step{Kind: StepTier, Tier: i, from: prev, upTo: t.upTo, Open: t.open,
			quantity: inTier, unit: t.unit, flat: t.flat, amount: amt})
		var ok bool
		if total, ok = total.add(amt); !ok {
			return u256{}, errOverflow
		}
		if last {
			break
		}
		prev = t.upTo
	}
	return total, nil
}

var errEventAmounts = errors.New("event amounts")

func (p *Price) ratePercentage(u *Usage, out *Result) (u256, error) {
	a, err := p.amount(u)
	if err != nil {
		return u256{}, err
	}
	if u.Events < 0 {
		return u256{}, fmt.Errorf("events: must not be negative (got %d)", u.Events)
	}
	feeEvents := max(0, u.Events-p.freeEvents)
	events12, _ := u128{lo: uint64(feeEvents)}.mulSmall(pow10[Scale]) // < 2^63·10^12
	fixed := mul(events12, p.fixedFee)

	charged := a
	if !p.free.isZero() {
		free := p.free
		if a.cmp(free) < 0 {
			free = a
		}
		out.addStep(Step{Kind: StepFreeUnits, Tier: -1, quantity: free})
		charged = a.sub(free)
	}
	variable := mul(charged, p.unit)
	out.addStep(Step{Kind: StepRate, Tier: -1, quantity: charged, unit: p.unit, amount: variable})
	out.addStep(Step{Kind: StepFixedFees, Tier: -1, quantity: events12, unit: p.fixedFee, amount: fixed})
	total, ok := variable.add(fixed)
	if !ok {
		return u256{}, errOverflow
	}
	if !p.hasMinFee && !p.hasMaxFee {
		return total, nil
	}
	clamped, err := p.clampedFees(u, a)
	if err != nil {
		return u256{}, err
	}
	s := Step{Kind: StepEventClamp, Tier: -1}
	if clamped.cmp(total) >= 0 {
		s.amount = clamped.sub(total)
	} else {
		s.amount, s.Neg = total.sub(clamped), true
	}
	out.addStep(s)
	return clamped, nil
}

// clampedFees sums the per-event fees rate×amount (+ fixed fee after the
// free events), each clamped to [min_fee, max_fee].
func (p *Price) clampedFees(u *Usage, sum u128) (u256, error) {
	if int64(len(u.EventAmounts)) != u.Events {
		return u256{}, fmt.Errorf("%w: min_fee/max_fee are per event, so the usage needs one amount per event (got %d amounts for %d events)",
			errEventAmounts, len(u.EventAmounts), u.Events)
	}
	lift := func(v u128) u256 { w, _ := v.wide().scaleUp(Scale); return w }
	fixed, lo, hi := lift(p.fixedFee), lift(p.minFee), lift(p.maxF)
	var total u256
	var check u128
	for i := range u.EventAmounts {
		e, err := fromDecimal(&u.EventAmounts[i])
		if err != nil {
			return u256{}, fmt.Errorf("event amount [%d] %s: %w", i, u.EventAmounts[i].Text('f'), err)
		}
		var ok bool
		if check, ok = check.add(e); !ok {
			return u256{}, errOverflow
		}
		fee := mul(e, p.unit)
		if int64(i) >= p.freeEvents {
			fee, _ = fee.add(fixed)
		}
		if p.hasMinFee && fee.cmp(lo) < 0 {
			fee = lo
		}
		if p.hasMaxFee && fee.cmp(hi) > 0 {
			fee = hi
		}
		if total, ok = total.add(fee); !ok {
			return u256{}, errOverflow
		}
	}
	if check != sum {
		got := decimalOf(check.wide(), Scale)
		return u256{}, fmt.Errorf("%w: they add up to %s, not to the amount %s",
			errEventAmounts, got.Text('f'), u.Amount.Text('f'))
	}
	return total, nil
}

// finish applies, in order, the minimum (prorated with the usage), the
// maximum, and the discounts, each as its own rounded line, then sets the
// total. Every line after the charge line is computed from rounded
// amounts, so the total equals the sum of the lines exactly.
func (p *Price) finish(u *Usage, out *Result) error {
	exp := p.currency.Exponent
	sub := out.total
	if p.hasMinimum {
		minM := p.minimum.wide().roundDown(Scale - exp) // exact: validated
		if u.Proration != nil {
			var err error
			if minM, err = prorate(p.minimum, *u.Proration, exp); err != nil {
				return err
			}
		}
		if sub.cmp(minM) < 0 {
			d := minM.sub(sub)
			out.addLine(LineMinimum, "", lifted(d, exp), d, false)
			sub = minM
		}
	}
	if p.hasMaximum {
		maxM := p.maximum.wide().roundDown(Scale - exp)
		if sub.cmp(maxM) > 0 {
			d := sub.sub(maxM)
			out.addLine(LineMaximum, "", lifted(d, exp), d, true)
			sub = maxM
		}
	}
	for i := range p.discounts {
		dc := &p.discounts[i]
		var exactD, d u256
		if dc.percent {
			base, _ := sub.scaleUp(Scale - exp)
			b, ok := narrow(base)
			if !ok {
				return errOverflow
			}
			exactD = mul(b, dc.value)
			d = exactD.roundDown(2*Scale - exp)
		} else {
			exactD, _ = dc.value.wide().scaleUp(Scale)
			d = dc.value.wide().roundDown(Scale - exp)
		}
		if d.cmp(sub) > 0 { // never below zero
			d = sub
		}
		out.addLine(LineDiscount, dc.desc, exactD, d, true)
		sub = sub.sub(d)
	}
	setDecimal(&out.Total, out.total, exp)
	return nil
}

// lifted turns an amount in minor units into the 10^24 scale.
func lifted(minor u256, exp int) u256 {
	v, _ := minor.scaleUp(2*Scale - exp)
	return v
}

func narrow(v u256) (u128, bool) { return u128{v[1], v[0]}, v[2]|v[3] == 0 }
