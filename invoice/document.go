package invoice

import (
	"time"
)

// Document is an invoice as served and frozen: JSON with a fixed field
// order, times in UTC, amounts as decimal text at the currency's minor
// unit. A finalized invoice's document is stored as bytes and never
// re-rendered; an as_of read recomputes it and must yield the same bytes.
type Document struct {
	ID           string     `json:"id"`
	Number       string     `json:"number,omitempty"`
	Customer     string     `json:"customer"`
	CustomerName string     `json:"customer_name,omitempty"`
	Subscription string     `json:"subscription"`
	Currency     string     `json:"currency"`
	TimeZone     string     `json:"time_zone"`
	Boundary     int        `json:"boundary"`
	PeriodStart  time.Time  `json:"period_start"` // the arrears period is [period_start, issue_at)
	IssueAt      time.Time  `json:"issue_at"`
	NextPeriod   *Period    `json:"next_period,omitempty"` // the period billed in advance, if any
	DueAt        time.Time  `json:"due_at"`
	TestClock    string     `json:"test_clock,omitempty"`
	FinalizedAt  *time.Time `json:"finalized_at,omitempty"`
	// KnownAt is the knowledge instant the content reflects: usage
	// aggregated and subscription events applied by then. Nil for a live
	// draft (computed from the current aggregates).
	KnownAt *time.Time `json:"known_at,omitempty"`
	Lines   []Line     `json:"lines"`
	Total   string     `json:"total"`
}

// Period is a half-open interval [Start, End).
type Period struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Line kinds.
const (
	KindFee        = "fee"        // a recurring fee, whole or prorated
	KindUsage      = "usage"      // a usage charge rated over its part of a period
	KindDiscount   = "discount"   // a subscription discount (negative)
	KindCommitment = "commitment" // true-up to the plan's minimum commitment
	KindAdjustment = "adjustment" // a change to what an earlier invoice billed
)

// Line is one invoice line. Key identifies what it bills within its
// period; the lines of one (period, key) across all finalized, not void
// invoices add up to what Abacus has billed for it.
type Line struct {
	Kind        string     `json:"kind"`
	Key         string     `json:"key"`
	Period      Period     `json:"period"` // the billing period it belongs to
	Item        string     `json:"item,omitempty"`
	Plan        string     `json:"plan,omitempty"` // "pro v2"
	Description string     `json:"description"`
	From        *time.Time `json:"from,omitempty"` // the part of the period billed
	To          *time.Time `json:"to,omitempty"`
	Proration   string     `json:"proration,omitempty"` // days billed / days in the period, "16/31"
	Meter       string     `json:"meter,omitempty"`
	Quantity    string     `json:"quantity,omitempty"`
	Events      *int64     `json:"events,omitempty"`
	UnitAmount  string     `json:"unit_amount,omitempty"` // a fee's amount for a whole period
	Breakdown   []Step     `json:"breakdown,omitempty"`
	Adjusts     string     `json:"adjusts,omitempty"` // adjustment: kind of the adjusted line
	Rated       string     `json:"rated,omitempty"`   // adjustment: the amount for this key now
	Billed      string     `json:"billed,omitempty"`  // adjustment: what earlier invoices billed for it
	Amount      string     `json:"amount"`
}

// Step is one row of a usage line's breakdown: Quantity × UnitPrice +
// FlatPrice = Amount (exact, before the line is rounded), or a
// price-level minimum, maximum or discount line.
type Step struct {
	Kind      string `json:"kind"`
	Tier      *int   `json:"tier,omitempty"`
	From      string `json:"from,omitempty"`
	UpTo      string `json:"up_to,omitempty"`
	Quantity  string `json:"quantity,omitempty"`
	UnitPrice string `json:"unit_price,omitempty"`
	FlatPrice string `json:"flat_price,omitempty"`
	Amount    string `json:"amount"`
}

// Forecast is the projected invoice at the end of a draft's period.
type Forecast struct {
	Method string    `json:"method"`
	AtTime time.Time `json:"at"` // the instant the projection was made from
	Lines  []Line    `json:"lines"`
	Total  string    `json:"total"`
}

// ForecastMethod describes how Forecast projects usage.
const ForecastMethod = "linear: each usage charge's quantity so far in the open period, " +
	"scaled by (period length / elapsed time) for sum and count meters; max, min, latest, avg " +
	"and unique_count meters keep their current value. Fees, discounts and the commitment " +
	"are computed as they will be at the period end if nothing changes."
