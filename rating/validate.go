package rating

import (
	"fmt"

	"github.com/cockroachdb/apd/v3"
)

// validator collects problems so that Validate reports all of them at once.
type validator struct {
	problems []Problem
	currency Currency
	known    bool // currency is known, so money digits can be checked
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// price checks a non-negative number with at most Scale fractional digits.
func (v *validator) price(path string, n *Number) bool {
	if n == nil {
		return false
	}
	ok := true
	if n.Sign() < 0 {
		v.add(path, "must not be negative (got %s)", n)
		ok = false
	}
	if d := n.fracDigits(); d > Scale {
		v.add(path, "has %d decimal places, at most %d are allowed", d, Scale)
		ok = false
	}
	if ok {
		if _, err := fromDecimal(&n.Decimal); err != nil {
			v.add(path, "%v", err)
			ok = false
		}
	}
	return ok
}

// money checks a price that must also be exact in the currency's minor unit,
// because it becomes an invoice line without rounding.
func (v *validator) money(path string, n *Number) bool {
	if !v.price(path, n) {
		return false
	}
	if v.known && n.fracDigits() > v.currency.Exponent {
		v.add(path, "has %d decimal places, %s allows %d", n.fracDigits(), v.currency.Code, v.currency.Exponent)
		return false
	}
	return true
}

// percent checks a rate in percent: 0..100 with at most Scale-2 decimals, so
// that the rate as a fraction has at most Scale.
func (v *validator) percent(path string, n *Number, positive bool) {
	if n == nil {
		return
	}
	if n.Sign() < 0 || (positive && n.Sign() == 0) || n.Cmp(apd.New(100, 0)) > 0 {
		lo := "0"
		if positive {
			lo = "greater than 0"
		}
		v.add(path, "must be a percent between %s and 100 (got %s)", lo, n)
	}
	if d := n.fracDigits(); d > Scale-2 {
		v.add(path, "has %d decimal places, at most %d are allowed for a percent", d, Scale-2)
	}
}

func (v *validator) require(path string, present bool) {
	if !present {
		v.add(path, "is required")
	}
}

func (v *validator) forbid(path string, present bool, m Model) {
	if present {
		v.add(path, "is not used by model %q", m)
	}
}

// Validate checks the definition and returns nil or a *ValidationError
// listing every problem with its JSON path, e.g.
// "tiers[2].up_to: must be greater than tiers[1].up_to (1000)".
func (d *Definition) Validate() error {
	v := &validator{}
	if d.Version != CurrentVersion {
		v.add("version", "must be %d (got %d)", CurrentVersion, d.Version)
	}
	if d.Currency == "" {
		v.add("currency", "is required")
	} else if c, err := LookupCurrency(d.Currency); err != nil {
		v.add("currency", "%v", err)
	} else {
		v.currency, v.known = c, true
	}

	m := d.Model
	tiered := m == Graduated || m == Volume || m == GraduatedPercentage
	pct := m == Percentage
	switch m {
	case Flat:
		v.require("amount", d.Amount != nil)
		v.price("amount", d.Amount)
	case PerUnit:
		v.require("unit_price", d.UnitPrice != nil)
		v.price("unit_price", d.UnitPrice)
		if t := d.Package; t != nil {
			v.divisor("package.divide_by", t.DivideBy)
			if t.Round != "up" && t.Round != "down" {
				v.add("package.round", `must be "up" or "down" (got %q)`, t.Round)
			}
		}
	case Package:
		v.require("package_size", d.PackageSize != nil)
		v.divisor("package_size", d.PackageSize)
		v.require("package_price", d.PackagePrice != nil)
		v.price("package_price", d.PackagePrice)
	case Graduated, Volume, GraduatedPercentage:
		v.tiers(d.Tiers, m)
	case Percentage:
		v.require("rate", d.Rate != nil)
		v.percent("rate", d.Rate, false)
		v.price("fixed_fee", d.FixedFee)
		v.price("min_fee", d.MinFee)
		v.price("max_fee", d.MaxFee)
		v.price("free_amount", d.FreeAmount)
		if d.MinFee != nil && d.MaxFee != nil && d.MinFee.Cmp(&d.MaxFee.Decimal) > 0 {
			v.add("max_fee", "must be at least min_fee (%s)", d.MinFee)
		}
		if d.FreeAmount != nil && (d.MinFee != nil || d.MaxFee != nil) {
			v.add("free_amount", "cannot be combined with min_fee or max_fee (per-event fees have no share of a free amount)")
		}
		if d.FreeEvents != nil && *d.FreeEvents < 0 {
			v.add("free_events", "must not be negative (got %d)", *d.FreeEvents)
		}
	case "":
		v.add("model", "is required")
	default:
		v.add("model", "unknown model %q (want flat, per_unit, graduated, volume, package, percentage or graduated_percentage)", m)
	}

	if m != "" {
		v.forbid("amount", d.Amount != nil && m != Flat, m)
		v.forbid("unit_price", d.UnitPrice != nil && m != PerUnit, m)
		v.forbid("package", d.Package != nil && m != PerUnit, m)
		v.forbid("package_size", d.PackageSize != nil && m != Package, m)
		v.forbid("package_price", d.PackagePrice != nil && m != Package, m)
		v.forbid("tiers", len(d.Tiers) > 0 && !tiered, m)
		v.forbid("rate", d.Rate != nil && !pct, m)
		v.forbid("fixed_fee", d.FixedFee != nil && !pct, m)
		v.forbid("min_fee", d.MinFee != nil && !pct, m)
		v.forbid("max_fee", d.MaxFee != nil && !pct, m)
		v.forbid("free_amount", d.FreeAmount != nil && !pct, m)
		v.forbid("free_events", d.FreeEvents != nil && !pct, m)
		v.forbid("free_units", d.FreeUnits != nil && (m == Flat || pct), m)
		v.forbid("minimum", d.Minimum != nil && m == Flat, m)
		v.forbid("maximum", d.Maximum != nil && m == Flat, m)
	}
	v.price("free_units", d.FreeUnits)
	v.money("minimum", d.Minimum)
	v.money("maximum", d.Maximum)
	if d.Minimum != nil && d.Maximum != nil && d.Minimum.Cmp(&d.Maximum.Decimal) > 0 {
		v.add("maximum", "must be at least minimum (%s)", d.Minimum)
	}
	for i := range d.Discounts {
		v.discount(fmt.Sprintf("discounts[%d]", i), &d.Discounts[i])
	}
	if len(v.problems) > 0 {
		return &ValidationError{Problems: v.problems}
	}
	return nil
}

func (v *validator) divisor(path string, n *Number) {
	if n == nil {
		if path == "package.divide_by" {
			v.add(path, "is required")
		}
		return
	}
	if !n.isInteger() || n.Sign() <= 0 || n.Cmp(apd.New(1, 18)) > 0 {
		v.add(path, "must be a whole number between 1 and 10^18 (got %s)", n)
	}
}

func (v *validator) discount(path string, d *Discount) {
	switch {
	case d.Percent != nil && d.Amount != nil:
		v.add(path, "set either percent or amount, not both")
	case d.Percent != nil:
		v.percent(path+".percent", d.Percent, true)
	case d.Amount != nil:
		v.money(path+".amount", d.Amount)
	default:
		v.add(path, "needs percent or amount")
	}
}

func (v *validator) tiers(tiers []Tier, m Model) {
	if len(tiers) == 0 {
		v.add("tiers", "is required: at least one tier, the last without up_to")
		return
	}
	var prev *Number // previous up_to
	for i := range tiers {
		t := &tiers[i]
		p := fmt.Sprintf("tiers[%d]", i)
		last := i == len(tiers)-1
		if m == GraduatedPercentage {
			v.require(p+".rate", t.Rate != nil)
			v.percent(p+".rate", t.Rate, false)
			v.forbid(p+".unit_price", t.UnitPrice != nil, m)
		} else {
			v.require(p+".unit_price", t.UnitPrice != nil)
			v.price(p+".unit_price", t.UnitPrice)
			v.forbid(p+".rate", t.Rate != nil, m)
		}
		v.price(p+".flat_price", t.FlatPrice)

		if t.From != nil {
			want, wantText := apd.New(0, 0), "0 for the first tier"
			if prev != nil {
				want, wantText = &prev.Decimal, fmt.Sprintf("tiers[%d].up_to (%s)", i-1, prev)
			}
			switch c := t.From.Cmp(want); {
			case i > 0 && prev == nil:
				// the previous tier is open or broken; reported there
			case c < 0:
				v.add(p+".from", "overlaps the previous tier: must equal %s, got %s", wantText, t.From)
			case c > 0:
				v.add(p+".from", "leaves a gap: must equal %s, got %s", wantText, t.From)
			}
		}
		if t.UpTo == nil {
			if !last {
				v.add(p+".up_to", "is required: only the last tier may be open")
			}
			prev = nil
			continue
		}
		if last {
			v.add(p+".up_to", "must be omitted: the last tier is open so that every quantity has a price")
		}
		if !v.price(p+".up_to", t.UpTo) {
			prev = nil
			continue
		}
		switch {
		case i == 0 && t.UpTo.Sign() <= 0:
			v.add(p+".up_to", "must be greater than 0")
		case prev != nil && t.UpTo.Cmp(&prev.Decimal) <= 0:
			v.add(p+".up_to", "must be greater than tiers[%d].up_to (%s)", i-1, prev)
		}
		prev = t.UpTo
	}
}
