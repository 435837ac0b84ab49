package rating

import (
	"fmt"

	"github.com/cockroachdb/apd/v3"
)

// Invoice is the plan-level sum of several rated charges: the charges'
// totals, a commitment true-up if the plan has a minimum commitment, and
// invoice-level discounts. Total is the sum of the charges' totals and the
// Lines, exactly.
type Invoice struct {
	Currency Currency
	Charges  []*Result
	Lines    []Line // commitment true-up, then discounts
	Total    apd.Decimal
}

// SummarizeInput is the input of Summarize.
type SummarizeInput struct {
	Currency   Currency
	Commitment *Number    // minimum commitment across all charges; nil for none
	Discounts  []Discount // invoice-level, applied after the commitment
	Charges    []*Result
}

// Validate reports every problem with the input at once.
func (in *SummarizeInput) Validate() error {
	v := &validator{currency: in.Currency, known: true}
	if _, err := LookupCurrency(in.Currency.Code); err != nil || in.Currency.Exponent != iso4217[in.Currency.Code] {
		v.add("currency", "unknown currency %q", in.Currency.Code)
		v.known = false
	}
	v.money("commitment", in.Commitment)
	for i := range in.Discounts {
		v.discount(fmt.Sprintf("discounts[%d]", i), &in.Discounts[i])
	}
	for i, c := range in.Charges {
		if c == nil {
			v.add(fmt.Sprintf("charges[%d]", i), "is nil")
		} else if c.Currency != in.Currency {
			v.add(fmt.Sprintf("charges[%d]", i), "is in %s, the invoice is in %s (no conversion is done)", c.Currency.Code, in.Currency.Code)
		}
	}
	if len(v.problems) > 0 {
		return &ValidationError{Problems: v.problems}
	}
	return nil
}

// Summarize totals rated charges into an invoice: when their sum is below
// the commitment it adds a LineCommitment true-up, then applies the
// discounts in order (never below zero). Errors: a *ValidationError for an
// invalid input, including any charge in another currency.
func Summarize(in *SummarizeInput) (*Invoice, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	// Reuse the per-charge machinery: a synthetic price whose "charge" is
	// the sum of the charges and whose minimum is the commitment.
	p := &Price{currency: in.Currency}
	for _, d := range in.Discounts {
		if d.Percent != nil {
			f, _ := fromDecimal(&d.Percent.Decimal)
			f, _ = f.divSmall(100)
			p.discounts = append(p.discounts, discount{desc: d.Description, percent: true, value: f})
		} else {
			a, _ := fromDecimal(&d.Amount.Decimal)
			p.discounts = append(p.discounts, discount{desc: d.Description, value: a})
		}
	}
	if in.Commitment != nil {
		p.minimum, _ = fromDecimal(&in.Commitment.Decimal)
		p.hasMinimum = true
	}
	var r Result
	r.reset(p)
	for _, c := range in.Charges {
		var ok bool
		if r.total, ok = r.total.add(c.total); !ok {
			return nil, errOverflow
		}
	}
	if err := p.finish(&Usage{}, &r); err != nil {
		return nil, err
	}
	for i := range r.Lines {
		if r.Lines[i].Kind == LineMinimum {
			r.Lines[i].Kind = LineCommitment
		}
	}
	return &Invoice{Currency: in.Currency, Charges: in.Charges, Lines: r.Lines, Total: r.Total}, nil
}
