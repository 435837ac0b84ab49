package abacus

import (
	"encoding/json"
	"time"
)

// Interval is the unit of a plan's billing period.
type Interval string

// Billing intervals. A plan bills every IntervalCount of them.
const (
	IntervalWeek    Interval = "week"
	IntervalMonth   Interval = "month"
	IntervalQuarter Interval = "quarter"
	IntervalYear    Interval = "year"
)

// ChargeType says how a plan charge is priced.
type ChargeType string

// Charge types.
const (
	// ChargeRecurring is a flat fee per billing period (Amount), billed in
	// advance or in arrears and prorated by calendar day for partial periods.
	ChargeRecurring ChargeType = "recurring"
	// ChargeUsage prices a meter's usage over the period with a rating
	// price definition (Price).
	ChargeUsage ChargeType = "usage"
)

// FeeTiming says when a recurring fee is billed.
type FeeTiming string

// Fee timings.
const (
	InAdvance FeeTiming = "advance" // at the start of the period it covers
	InArrears FeeTiming = "arrears" // at the end of the period it covers
)

// Plan is one version of a catalog plan. Plans are immutable: publishing a
// plan with an existing key creates the next version, and subscriptions stay
// on the version they were started or changed to until they are changed
// explicitly. Validation lives in package subscription (it needs the rating
// engine).
type Plan struct {
	TenantID      string   `json:"-"`
	Key           string   `json:"key"`
	Version       int      `json:"version"`
	Name          string   `json:"name,omitempty"`
	Description   string   `json:"description,omitempty"`
	Currency      string   `json:"currency"`
	Interval      Interval `json:"interval"`
	IntervalCount int      `json:"interval_count"`
	TrialDays     int      `json:"trial_days,omitempty"`
	// MinimumCommitment is the least a billing period costs: when the
	// period's charges (fees, usage, their discounts) add up to less, the
	// invoice adds a true-up line. Decimal text in the plan's currency,
	// prorated like fees for partial periods; empty for none.
	MinimumCommitment string       `json:"minimum_commitment,omitempty"`
	Charges           []PlanCharge `json:"charges"`
	CreatedAt         time.Time    `json:"created_at"`
}

// PlanCharge is one item of a plan.
type PlanCharge struct {
	// Key names the item within the plan ("base", "api_calls"); a
	// subscription has one charge in force per item at any instant.
	Key  string     `json:"key"`
	Name string     `json:"name,omitempty"`
	Type ChargeType `json:"type"`
	// Amount is the recurring fee per billing period, an exact decimal in
	// the plan's currency (recurring only).
	Amount string `json:"amount,omitempty"`
	// Timing is when a recurring fee is billed (default advance).
	Timing FeeTiming `json:"timing,omitempty"`
	// Meter is the key of the meter whose usage this item prices (usage only).
	Meter string `json:"meter,omitempty"`
	// Price is a rating price definition (docs/pricing.md) in the plan's
	// currency (usage only).
	Price json.RawMessage `json:"price,omitempty"`
}

// PlanRef names one version of a plan.
type PlanRef struct {
	Key     string `json:"key"`
	Version int    `json:"version"`
}
