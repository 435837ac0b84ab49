package rating

import (
	"fmt"
)

// Price is a compiled, validated price definition, ready to rate. It is
// immutable and safe for concurrent use by many goroutines; each goroutine
// brings its own Result.
type Price struct {
	def      Definition
	currency Currency
	model    Model

	unit  u128 // unit price, package price, or (percentage) rate as a fraction
	flat  u128 // flat amount
	tiers []tier

	divBy   uint64 // package transform: divide_by or package_size; 0 = none
	roundUp bool

	free                   u128 // free_units or (percentage) free_amount
	fixedFee, minFee, maxF u128
	hasMinFee, hasMaxFee   bool
	freeEvents             int64

	minimum, maximum       u128
	hasMinimum, hasMaximum bool
	discounts              []discount
}

type tier struct {
	upTo u128 // inclusive upper bound; unused when open
	open bool
	unit u128 // unit price, or rate as a fraction
	flat u128
}

type discount struct {
	desc    string
	percent bool
	value   u128 // fraction (percent/100) or amount, scaled by 10^12
}

// Compile validates d and returns the Price that rates it. The error is a
// *ValidationError listing every problem when d is invalid.
func Compile(d *Definition) (*Price, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	cur, _ := LookupCurrency(d.Currency)
	p := &Price{def: *d, currency: cur, model: d.Model}
	p.def.Tiers = append([]Tier(nil), d.Tiers...)
	p.def.Discounts = append([]Discount(nil), d.Discounts...)
	// Validate has proven every conversion below exact and in range.
	val := func(n *Number) u128 {
		if n == nil {
			return u128{}
		}
		v, err := fromDecimal(&n.Decimal)
		if err != nil {
			panic(fmt.Sprintf("rating: validated value %s does not convert: %v", n, err))
		}
		return v
	}
	frac := func(n *Number) u128 { // percent -> fraction, exact (<= 10 decimals)
		v, _ := val(n).divSmall(100)
		return v
	}
	integer := func(n *Number) uint64 {
		v, _ := val(n).divSmall(pow10[Scale])
		return v.lo
	}
	switch d.Model {
	case Flat:
		p.flat = val(d.Amount)
	case PerUnit:
		p.unit = val(d.UnitPrice)
		if d.Package != nil {
			p.divBy, p.roundUp = integer(d.Package.DivideBy), d.Package.Round == "up"
		}
	case Package:
		p.unit = val(d.PackagePrice)
		p.divBy, p.roundUp = integer(d.PackageSize), true
	case Graduated, Volume, GraduatedPercentage:
		p.tiers = make([]tier, len(d.Tiers))
		for i, t := range d.Tiers {
			ct := &p.tiers[i]
			ct.open = t.UpTo == nil
			ct.upTo = val(t.UpTo)
			if d.Model == GraduatedPercentage {
				ct.unit = frac(t.Rate)
			} else {
				ct.unit = val(t.UnitPrice)
			}
			ct.flat = val(t.FlatPrice)
		}
	case Percentage:
		p.unit = frac(d.Rate)
		p.fixedFee = val(d.FixedFee)
		p.minFee, p.hasMinFee = val(d.MinFee), d.MinFee != nil
		p.maxF, p.hasMaxFee = val(d.MaxFee), d.MaxFee != nil
		p.free = val(d.FreeAmount)
		if d.FreeEvents != nil {
			p.freeEvents = *d.FreeEvents
		}
	}
	if d.FreeUnits != nil {
		p.free = val(d.FreeUnits)
	}
	p.minimum, p.hasMinimum = val(d.Minimum), d.Minimum != nil
	p.maximum, p.hasMaximum = val(d.Maximum), d.Maximum != nil
	for _, dc := range d.Discounts {
		if dc.Percent != nil {
			p.discounts = append(p.discounts, discount{desc: dc.Description, percent: true, value: frac(dc.Percent)})
		} else {
			p.discounts = append(p.discounts, discount{desc: dc.Description, value: val(dc.Amount)})
		}
	}
	return p, nil
}

// ParsePrice is ParseDefinition followed by Compile.
func ParsePrice(data []byte) (*Price, error) {
	d, err := ParseDefinition(data)
	if err != nil {
		return nil, err
	}
	return Compile(d)
}

// Currency returns the price's currency.
func (p *Price) Currency() Currency { return p.currency }

// Model returns the price's model.
func (p *Price) Model() Model { return p.model }

// Definition returns a copy of the definition the price was compiled from.
func (p *Price) Definition() Definition { return p.def }
