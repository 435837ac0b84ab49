package subscription

import (
	"fmt"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/billing"
	"github.com/abacus-billing/abacus/rating"
)

// Schedule returns the billing cadence of a subscription.
func Schedule(s *abacus.Subscription) (billing.Schedule, error) {
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return billing.Schedule{}, fmt.Errorf("subscription %s: time zone %q: %w", s.ID, s.TimeZone, err)
	}
	sch := billing.Schedule{Interval: s.Interval, Count: s.IntervalCount, Anchor: s.AnchorAt, Loc: loc}
	return sch, sch.Validate()
}

// Proration is a recurring charge's share of a billing period it covers only
// in part: a start or change mid-period, a cancel before the period's end,
// or the stub period of a calendar-anchored subscription. Amount is
// FullAmount × Days, rounded half up to the currency's minor unit by the
// rating engine (rating.Prorate): calendar days in the customer's zone, the
// day of a change belonging to the charge that starts that day.
type Proration struct {
	ChargeID    string    `json:"charge"`
	Item        string    `json:"item"`
	Plan        string    `json:"plan"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Days        string    `json:"days"` // "16/31"
	FullAmount  string    `json:"full_amount"`
	Amount      string    `json:"amount"`
	Currency    string    `json:"currency"`
}

// Prorations returns the prorations of the recurring charges among charges
// (the trial, which bills nothing, has none). An open-ended charge is
// considered up to the end of the period it starts in.
func Prorations(s *abacus.Subscription, charges []*abacus.Charge) ([]Proration, error) {
	sch, err := Schedule(s)
	if err != nil {
		return nil, err
	}
	cur, err := rating.LookupCurrency(s.Currency)
	if err != nil {
		return nil, err
	}
	var out []Proration
	for _, c := range charges {
		if c.Type != abacus.ChargeRecurring || c.Trial {
			continue
		}
		first := sch.PeriodAt(c.StartsAt)
		periods := []billing.Period{first}
		if c.EndsAt != nil {
			if last := sch.PeriodAt(c.EndsAt.Add(-time.Nanosecond)); last.Index != first.Index {
				periods = append(periods, last)
			}
		}
		amount, err := ParseAmount(c.Amount)
		if err != nil {
			return nil, fmt.Errorf("charge %s: amount: %w", c.ID, err)
		}
		for _, p := range periods {
			from, to := maxTime(p.Start, c.StartsAt), p.End
			if c.EndsAt != nil && c.EndsAt.Before(to) {
				to = *c.EndsAt
			}
			if from.Equal(p.Start) && to.Equal(p.End) {
				continue // a whole period: nothing to prorate
			}
			v, f, err := rating.Prorate(&amount, cur, rating.Interval{Start: p.Start, End: p.End}, rating.Interval{Start: from, End: to}, sch.Loc)
			if err != nil {
				return nil, fmt.Errorf("charge %s: %w", c.ID, err)
			}
			out = append(out, Proration{ChargeID: c.ID, Item: c.Item, Plan: fmt.Sprintf("%s v%d", c.Plan.Key, c.Plan.Version),
				PeriodStart: p.Start.UTC(), PeriodEnd: p.End.UTC(), From: from.UTC(), To: to.UTC(), Days: f.String(),
				FullAmount: c.Amount, Amount: v.Text('f'), Currency: s.Currency})
		}
	}
	return out, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
