package subscription

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/rating"
	"github.com/cockroachdb/apd/v3"
)

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

// MaxPlanCharges bounds the items of one plan.
const MaxPlanCharges = 50

// ValidatePlan reports every problem of p at once and normalises it: the
// currency upper-cased, interval_count defaulting to 1, recurring timing
// defaulting to advance, amounts in canonical decimal form and prices in
// compact JSON. Usage prices must be valid rating definitions in the plan's
// currency.
func ValidatePlan(p *abacus.Plan) error {
	var pr abacus.Problems
	if !keyPattern.MatchString(p.Key) {
		pr.Add("key", "must be 1-128 characters of letters, digits, '_', '.', ':' or '-', starting with a letter or digit")
	}
	if len(p.Name) > 256 || len(p.Description) > 4096 {
		pr.Add("name", "name is at most 256 and description at most 4096 bytes")
	}
	p.Currency = strings.ToUpper(p.Currency)
	if _, err := rating.LookupCurrency(p.Currency); err != nil {
		pr.Add("currency", "%v", err)
	}
	switch p.Interval {
	case abacus.IntervalWeek, abacus.IntervalMonth, abacus.IntervalQuarter, abacus.IntervalYear:
	default:
		pr.Add("interval", "must be week, month, quarter or year, got %q", p.Interval)
	}
	if p.IntervalCount == 0 {
		p.IntervalCount = 1
	}
	if p.IntervalCount < 1 || p.IntervalCount > 100 {
		pr.Add("interval_count", "must be 1-100, got %d", p.IntervalCount)
	}
	if p.TrialDays < 0 || p.TrialDays > 730 {
		pr.Add("trial_days", "must be 0-730, got %d", p.TrialDays)
	}
	if p.MinimumCommitment != "" {
		if amount, err := ParseAmount(p.MinimumCommitment); err != nil {
			pr.Add("minimum_commitment", "%v", err)
		} else {
			p.MinimumCommitment = amount.Text('f')
		}
	}
	if len(p.Charges) == 0 {
		pr.Add("charges", "a plan needs at least one charge")
	}
	if len(p.Charges) > MaxPlanCharges {
		pr.Add("charges", "at most %d charges, got %d", MaxPlanCharges, len(p.Charges))
	}
	seen := map[string]bool{}
	for i := range p.Charges {
		validateCharge(&pr, fmt.Sprintf("charges[%d]", i), &p.Charges[i], p.Currency, seen)
	}
	return pr.Err()
}

func validateCharge(pr *abacus.Problems, path string, c *abacus.PlanCharge, currency string, seen map[string]bool) {
	if !keyPattern.MatchString(c.Key) {
		pr.Add(path+".key", "must be 1-128 characters of letters, digits, '_', '.', ':' or '-'")
	} else if seen[c.Key] {
		pr.Add(path+".key", "%q is used by another charge of the plan", c.Key)
	}
	seen[c.Key] = true
	switch c.Type {
	case abacus.ChargeRecurring:
		amount, err := ParseAmount(c.Amount)
		if err != nil {
			pr.Add(path+".amount", "%v", err)
		} else {
			c.Amount = amount.Text('f')
		}
		if c.Timing == "" {
			c.Timing = abacus.InAdvance
		}
		if c.Timing != abacus.InAdvance && c.Timing != abacus.InArrears {
			pr.Add(path+".timing", "must be advance or arrears, got %q", c.Timing)
		}
		if c.Meter != "" || len(c.Price) > 0 {
			pr.Add(path, "a recurring charge has an amount, not a meter or price")
		}
	case abacus.ChargeUsage:
		if c.Meter == "" {
			pr.Add(path+".meter", "is required for a usage charge")
		}
		if c.Amount != "" || c.Timing != "" {
			pr.Add(path, "a usage charge has a meter and price, not an amount or timing")
		}
		if len(c.Price) == 0 {
			pr.Add(path+".price", "is required for a usage charge")
			return
		}
		price, err := rating.ParsePrice(c.Price)
		var ve *rating.ValidationError
		switch {
		case errors.As(err, &ve):
			for _, p := range ve.Problems {
				pr.Add(path+".price."+p.Path, "%s", p.Message)
			}
		case err != nil:
			pr.Add(path+".price", "%v", err)
		case price.Currency().Code != currency:
			pr.Add(path+".price.currency", "is %s; a plan's prices must be in the plan's currency %s", price.Currency().Code, currency)
		case price.Model() == rating.Flat:
			pr.Add(path+".price.model", "flat is a recurring fee: use a recurring charge with an amount")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, c.Price); err == nil {
			c.Price = buf.Bytes()
		}
	default:
		pr.Add(path+".type", "must be recurring or usage, got %q", c.Type)
	}
}

// ParseAmount parses a non-negative money amount with at most 12 fractional
// digits (the rating engine's internal scale).
func ParseAmount(s string) (apd.Decimal, error) {
	if s == "" {
		return apd.Decimal{}, errors.New("is required")
	}
	d, err := abacus.ParseQuantity(s)
	if err != nil {
		return d, errors.New(abacus.ErrorMessage(err))
	}
	if d.Negative && !d.IsZero() {
		return d, fmt.Errorf("must not be negative, got %s", s)
	}
	d.Negative = false
	return d, nil
}

// ChangeDirection is how a plan change compares for the customer.
type ChangeDirection string

// Change directions.
const (
	Upgrade   ChangeDirection = "upgrade"
	Downgrade ChangeDirection = "downgrade"
)

// Direction classifies a change from one plan to another by their recurring
// fees per billing period: a lower sum is a downgrade, anything else
// (higher, equal, or a change of usage prices only) an upgrade. Usage
// prices do not take part: without usage there is nothing to compare.
func Direction(from, to *abacus.Plan) ChangeDirection {
	if recurringTotal(to).Cmp(recurringTotal(from)) < 0 {
		return Downgrade
	}
	return Upgrade
}

func recurringTotal(p *abacus.Plan) *apd.Decimal {
	total := new(apd.Decimal)
	for _, c := range p.Charges {
		if c.Type != abacus.ChargeRecurring {
			continue
		}
		a, err := ParseAmount(c.Amount)
		if err != nil {
			continue // validated plans have none
		}
		_, _ = abacus.Exact.Add(total, total, &a)
	}
	return total
}
