package rating

import (
	"github.com/cockroachdb/apd/v3"
)

// Usage is what a customer used in one period for one price.
type Usage struct {
	// Quantity is the summed quantity of the meter (flat ignores it;
	// percentage models read Amount instead). At most 12 fractional digits,
	// never negative.
	Quantity apd.Decimal

	// Events, Amount and AmountCurrency feed the percentage models: the
	// number of events (payments), their summed amount, and its currency,
	// which must equal the price's currency (no conversion happens).
	Events         int64
	Amount         apd.Decimal
	AmountCurrency string

	// EventAmounts are the individual event amounts. They are required when
	// a percentage price has min_fee or max_fee (the clamp is per event, so
	// the sum alone cannot give an exact answer) and must then number
	// Events and add up to Amount. Free events are the first free_events
	// of this slice.
	EventAmounts []apd.Decimal

	// Proration, when not nil, charges only this fraction of the flat
	// amount and of the minimum (see Prorate for how a fraction is derived
	// from dates). Nil means the whole period.
	Proration *Fraction
}

// LineKind says what an invoice line is for.
type LineKind string

// The kinds of invoice lines a rating produces.
const (
	LineCharge     LineKind = "charge"     // the priced usage or flat fee
	LineMinimum    LineKind = "minimum"    // true-up to the minimum charge
	LineMaximum    LineKind = "maximum"    // reduction down to the maximum charge (negative)
	LineDiscount   LineKind = "discount"   // a discount (negative)
	LineCommitment LineKind = "commitment" // plan-level true-up to the minimum commitment
)

// Line is one invoice line: an amount rounded once to the currency's minor
// unit. Charge and minimum lines are >= 0, maximum and discount lines <= 0.
type Line struct {
	Kind        LineKind
	Description string      // from the definition (discounts), may be empty
	Amount      apd.Decimal // rounded, exponent = -currency exponent
	exact       u256        // magnitude before rounding, scaled by 10^24
	minor       u256        // magnitude of Amount in minor units
	neg         bool
}

// Exact returns the line's amount before rounding (for audit displays).
func (l *Line) Exact() apd.Decimal {
	d := decimalOf(l.exact, 2*Scale)
	d.Negative = l.neg && !d.IsZero()
	return d
}

// StepKind names a row of a breakdown.
type StepKind string

// Breakdown rows.
const (
	StepTier       StepKind = "tier"        // one tier of graduated/volume/graduated_percentage
	StepUnits      StepKind = "units"       // quantity × unit price
	StepPackages   StepKind = "packages"    // packages × package price
	StepFreeUnits  StepKind = "free_units"  // included quantity, priced 0
	StepRate       StepKind = "rate"        // amount × rate
	StepFixedFees  StepKind = "fixed_fees"  // events × fixed fee
	StepEventClamp StepKind = "event_clamp" // effect of per-event min/max fees
	StepFlat       StepKind = "flat"        // flat amount
)

// Step is a row of the breakdown of the charge line: Quantity × UnitPrice +
// FlatPrice = Amount, exactly (no rounding happens in a step). Values are
// kept in the kernel's fixed point and converted on demand by the methods,
// which allocate; rating itself does not.
type Step struct {
	Kind StepKind
	Tier int // index into the definition's tiers for StepTier, else -1
	Neg  bool

	from, upTo u128 // tier bounds (StepTier); upTo unused when Open
	Open       bool
	quantity   u128
	unit       u128 // price per unit, or rate as a fraction
	flat       u128
	amount     u256 // scaled by 10^24
}

// From is the exclusive lower bound of the tier (StepTier).
func (s *Step) From() apd.Decimal { return decimalOf(s.from.wide(), Scale) }

// UpTo is the inclusive upper bound of the tier; meaningless when Open.
func (s *Step) UpTo() apd.Decimal { return decimalOf(s.upTo.wide(), Scale) }

// Quantity is the number of units (or packages, events, amount) priced.
func (s *Step) Quantity() apd.Decimal { return decimalOf(s.quantity.wide(), Scale) }

// UnitPrice is the price per unit; for rates, the rate as a fraction
// (0.029 for 2.9 %).
func (s *Step) UnitPrice() apd.Decimal { return decimalOf(s.unit.wide(), Scale) }

// FlatPrice is the flat price charged by the step (a tier's flat_price).
func (s *Step) FlatPrice() apd.Decimal { return decimalOf(s.flat.wide(), Scale) }

// Amount is Quantity × UnitPrice + FlatPrice, exact (negative when Neg).
func (s *Step) Amount() apd.Decimal {
	d := decimalOf(s.amount, 2*Scale)
	d.Negative = s.Neg && !d.IsZero()
	return d
}

// Result is the outcome of rating. Reuse one Result across calls to Rate:
// its slices are reset, not reallocated, which keeps rating free of heap
// allocations.
type Result struct {
	Currency Currency
	Model    Model
	Steps    []Step // breakdown of the charge line
	Lines    []Line // charge line first, then minimum/maximum, then discounts
	// Total is the sum of the rounded Lines, in the currency's minor unit;
	// never negative.
	Total apd.Decimal

	total u256 // Total in minor units
}

func (r *Result) reset(p *Price) {
	r.Currency = p.currency
	r.Model = p.model
	r.Steps = r.Steps[:0]
	r.Lines = r.Lines[:0]
	r.total = u256{}
}

func (r *Result) addStep(s Step) { r.Steps = append(r.Steps, s) }

// addLine appends a line whose magnitude before rounding is exact (scaled by
// 10^24) and whose rounded magnitude in minor units is minor.
func (r *Result) addLine(kind LineKind, desc string, exact, minor u256, neg bool) {
	r.Lines = append(r.Lines, Line{Kind: kind, Description: desc, exact: exact, minor: minor, neg: neg})
	l := &r.Lines[len(r.Lines)-1]
	setDecimal(&l.Amount, minor, r.Currency.Exponent)
	l.Amount.Negative = neg && !minor.isZero()
	if neg {
		r.total = r.total.sub(minor)
	} else {
		r.total, _ = r.total.add(minor)
	}
}
