package abacus

import (
	"context"
	"encoding/json"
	"time"
)

// SubscriptionEventType is what a subscription event changes.
type SubscriptionEventType string

// Subscription event types (docs/subscriptions.md).
const (
	SubStart          SubscriptionEventType = "start"           // a new subscription on a plan
	SubChange         SubscriptionEventType = "change"          // another plan (or plan version) from the effective time on
	SubCancel         SubscriptionEventType = "cancel"          // the subscription ends at the effective time
	SubDiscount       SubscriptionEventType = "discount"        // apply (or replace) a discount from the effective time on
	SubRemoveDiscount SubscriptionEventType = "remove_discount" // remove a discount from the effective time on
)

// Billing anchors of a subscription.
const (
	// AnchorCalendar aligns periods to calendar boundaries in the customer's
	// time zone (the 1st of the month, Monday, Jan/Apr/Jul/Oct 1, Jan 1);
	// a subscription starting mid-period starts with a prorated stub period.
	AnchorCalendar = "calendar"
	// AnchorAnniversary starts periods at the subscription's start (or its
	// trial's end) and repeats on that day, clamped to short months.
	AnchorAnniversary = "anniversary"
)

// Discount reduces the charges of a subscription from the time it is applied
// until it is removed (or Until). Exactly one of Percent and Amount is set.
// An Amount is per billing period in the subscription's currency. Items
// limits it to some plan items; empty means every item.
type Discount struct {
	Key         string     `json:"key"`
	Description string     `json:"description,omitempty"`
	Percent     string     `json:"percent,omitempty"`
	Amount      string     `json:"amount,omitempty"`
	Items       []string   `json:"items,omitempty"`
	Until       *time.Time `json:"until,omitempty"`
}

// SubscriptionEvent is one change to a customer's subscriptions, as it
// travels on the subscription log. Commands of the API produce them, and
// external producers (a CRM) send them to POST /v1/subscription-events.
//
// Events of one customer are applied strictly in Version order (1, 2, 3,
// ...). A producer states the order with Version or with PreviousID (the id
// of the customer's event before this one); the first event of a customer
// has version 1. Everything an event needs to be applied the same way on
// every replay (plan version, time zone, currency) is resolved when it is
// accepted and carried in the event.
type SubscriptionEvent struct {
	TenantID       string                `json:"tenant,omitempty"`
	ID             string                `json:"id"`
	CustomerID     string                `json:"customer"`
	SubscriptionID string                `json:"subscription"`
	Type           SubscriptionEventType `json:"type"`
	EffectiveAt    time.Time             `json:"effective_at"`
	Version        int64                 `json:"version,omitempty"`
	PreviousID     string                `json:"previous_id,omitempty"`
	Source         string                `json:"source,omitempty"` // "api" (a command) or "external"
	ReceivedAt     time.Time             `json:"received_at"`

	// start and change
	Plan *PlanRef `json:"plan,omitempty"`
	// start only
	Anchor   string `json:"billing_anchor,omitempty"`
	TimeZone string `json:"time_zone,omitempty"`
	// discount
	Discount *Discount `json:"discount,omitempty"`
	// remove_discount
	DiscountKey string `json:"discount_key,omitempty"`
}

// SubscriptionEventStatus is where an accepted subscription event stands.
type SubscriptionEventStatus string

// Subscription event statuses.
const (
	// SubEventHeld: its predecessor has not arrived; it waits, unapplied.
	SubEventHeld SubscriptionEventStatus = "held"
	// SubEventApplied: it is part of the subscription's history.
	SubEventApplied SubscriptionEventStatus = "applied"
	// SubEventRejected: its turn came and it contradicted the history
	// (Reason says how), or its version was already taken. A rejected
	// event with a version still takes its place in the order, so the
	// events after it are not blocked.
	SubEventRejected SubscriptionEventStatus = "rejected"
)

// SubscriptionEventRecord is a subscription event as the store keeps it.
type SubscriptionEventRecord struct {
	SubscriptionEvent
	Status     SubscriptionEventStatus `json:"status"`
	Reason     string                  `json:"reason,omitempty"`
	Duplicates int64                   `json:"duplicates"`
	// AppliedAt is when the event took its place in the customer's order:
	// applied, or rejected in turn. It is nil while held, and for an event
	// rejected because its place was taken (which holds no place, so
	// events chained after it are rejected too).
	AppliedAt *time.Time `json:"applied_at,omitempty"`
	Partition int        `json:"-"`
	Sequence  uint64     `json:"-"`
}

// SubscriptionHead is how far a customer's event order has been applied.
type SubscriptionHead struct {
	TenantID   string
	CustomerID string
	Version    int64  // the last applied (or rejected in turn) version; 0 if none
	EventID    string // the event at Version
}

// Phase is a stretch of a subscription's life with constant terms.
type Phase struct {
	From      time.Time  `json:"from"`
	To        *time.Time `json:"to,omitempty"` // nil: open (until a later change)
	Plan      PlanRef    `json:"plan"`
	Trial     bool       `json:"trial,omitempty"`
	Discounts []Discount `json:"discounts,omitempty"`
}

// Subscription is the read model of one subscription: its terms as derived
// from the applied events, stored whole after each applied event.
type Subscription struct {
	TenantID      string     `json:"-"`
	ID            string     `json:"id"`
	CustomerID    string     `json:"customer"`
	Currency      string     `json:"currency"`
	TimeZone      string     `json:"time_zone"`
	Interval      Interval   `json:"interval"`
	IntervalCount int        `json:"interval_count"`
	Anchor        string     `json:"billing_anchor"`
	AnchorAt      time.Time  `json:"anchor_at"` // a period boundary
	StartAt       time.Time  `json:"start_at"`
	TrialEndsAt   *time.Time `json:"trial_ends_at,omitempty"`
	EndsAt        *time.Time `json:"ends_at,omitempty"`
	Phases        []Phase    `json:"phases"`
	// Version is the customer's event version of the last event applied
	// to this subscription, LastEventID its id.
	Version     int64     `json:"version"`
	LastEventID string    `json:"last_event_id"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Charge is one effective-dated charge record: one plan item in force over
// [StartsAt, EndsAt). Records are immutable and bitemporal: when a later
// (or late) event changes what is in force, the records it contradicts are
// superseded (SupersededAt) and new ones recorded, so the charges in force
// at any instant can be read as they are known now or as they were known
// at any past moment.
type Charge struct {
	TenantID       string          `json:"-"`
	ID             string          `json:"id"` // derived from the terms: the same history yields the same ids
	SubscriptionID string          `json:"subscription"`
	CustomerID     string          `json:"customer"`
	Item           string          `json:"item"`
	Name           string          `json:"name,omitempty"`
	Plan           PlanRef         `json:"plan"`
	Type           ChargeType      `json:"type"`
	Currency       string          `json:"currency"`
	Amount         string          `json:"amount,omitempty"`
	Timing         FeeTiming       `json:"timing,omitempty"`
	Meter          string          `json:"meter,omitempty"`
	Price          json.RawMessage `json:"price,omitempty"`
	Discounts      []Discount      `json:"discounts,omitempty"`
	Trial          bool            `json:"trial,omitempty"`
	StartsAt       time.Time       `json:"starts_at"`
	EndsAt         *time.Time      `json:"ends_at,omitempty"`
	EventID        string          `json:"event_id"` // the applied event that started it
	RecordedAt     time.Time       `json:"recorded_at"`
	SupersededAt   *time.Time      `json:"superseded_at,omitempty"`
}

// InForce reports whether c covers instant t.
func (c *Charge) InForce(t time.Time) bool {
	return !t.Before(c.StartsAt) && (c.EndsAt == nil || t.Before(*c.EndsAt))
}

// ChargeFilter selects charge records of one subscription.
type ChargeFilter struct {
	TenantID       string
	SubscriptionID string
	// At selects the charges in force at an instant (nil: all).
	At *time.Time
	// AsOf reads the records as they were known at an instant (nil: now):
	// recorded at or before AsOf and not superseded by then.
	AsOf *time.Time
}

// SubscriptionEventFilter selects subscription event records. Empty fields
// do not filter; TenantID is required.
type SubscriptionEventFilter struct {
	TenantID       string
	CustomerID     string
	SubscriptionID string
	Status         SubscriptionEventStatus
}

// Alert is a condition an operator should see, kept until resolved. Alerts
// are raised idempotently by id; a later alerting component delivers them.
type Alert struct {
	TenantID   string          `json:"-"`
	ID         string          `json:"id"`
	Kind       string          `json:"kind"` // e.g. "subscription_gap"
	Subject    string          `json:"subject"`
	Message    string          `json:"message"`
	Details    json.RawMessage `json:"details,omitempty"`
	RaisedAt   time.Time       `json:"raised_at"`
	ResolvedAt *time.Time      `json:"resolved_at,omitempty"`
}

// AlertSubscriptionGap is raised when a held subscription event has waited
// for its predecessor longer than the configured bound.
const AlertSubscriptionGap = "subscription_gap"

// SubscriptionStore keeps plans, subscription events and the subscription
// read models. It is part of Store.
type SubscriptionStore interface {
	// CreatePlan stores p as the next version of its key (1 for a new key)
	// and sets p.Version.
	CreatePlan(ctx context.Context, p *Plan) error
	// FindPlan returns one version of a plan; version 0 is the latest.
	// ENOTFOUND.
	FindPlan(ctx context.Context, tenantID, key string, version int) (*Plan, error)
	// ListPlans returns the latest version of every plan, by key.
	ListPlans(ctx context.Context, tenantID string) ([]*Plan, error)
	// ListPlanVersions returns every version of a plan, oldest first.
	ListPlanVersions(ctx context.Context, tenantID, key string) ([]*Plan, error)

	// ApplySubscriptions runs fn in one transaction, committed if fn
	// returns nil. The subscription consumer writes event records, heads,
	// subscriptions, charges and its log position through tx.
	ApplySubscriptions(ctx context.Context, fn func(tx SubscriptionTx) error) error
	// SubscriptionPositions returns the last applied sequence of every
	// subscription log partition that has one.
	SubscriptionPositions(ctx context.Context) (map[int]uint64, error)

	// FindSubscription returns one subscription. ENOTFOUND.
	FindSubscription(ctx context.Context, tenantID, id string) (*Subscription, error)
	// ListSubscriptions returns a customer's subscriptions by start, then
	// id; an empty customerID lists the tenant's, and an empty tenantID
	// too every tenant's (the invoice scheduler's scan).
	ListSubscriptions(ctx context.Context, tenantID, customerID string) ([]*Subscription, error)
	// FindSubscriptionEvent returns one event record. ENOTFOUND.
	FindSubscriptionEvent(ctx context.Context, tenantID, id string) (*SubscriptionEventRecord, error)
	// ListSubscriptionEvents returns the records matching f ordered by
	// version (held events without a known version last), then received
	// time, then id.
	ListSubscriptionEvents(ctx context.Context, f SubscriptionEventFilter) ([]*SubscriptionEventRecord, error)
	// SubscriptionHead returns how far a customer's events are applied
	// (Version 0 if none).
	SubscriptionHead(ctx context.Context, tenantID, customerID string) (SubscriptionHead, error)
	// ListCharges returns the charge records matching f by item, then start.
	ListCharges(ctx context.Context, f ChargeFilter) ([]*Charge, error)
	// HeldSince returns the held events of every tenant received before t,
	// oldest first.
	HeldSince(ctx context.Context, t time.Time) ([]*SubscriptionEventRecord, error)

	// ListAlerts returns a tenant's alerts, newest first; open only if
	// openOnly.
	ListAlerts(ctx context.Context, tenantID string, openOnly bool) ([]*Alert, error)
}

// SubscriptionTx is the write side of one subscription-consumer transaction.
type SubscriptionTx interface {
	// Stamp returns the transaction's knowledge stamp, as ApplyTx.Stamp
	// does: the first call takes the shared knowledge lock and picks
	// max(now(), mark+1), later calls return the same instant. A
	// transaction that changes charges takes it first, before Lock, and
	// uses it as recorded_at and superseded_at, so that charges read as of
	// a barrier's K never change afterwards.
	Stamp(ctx context.Context, now func() time.Time) (time.Time, error)
	// Lock takes an exclusive lock on key until the transaction ends.
	// Consumers of different partitions can touch the same subscription
	// (two customers naming one subscription id) or event id, and the gap
	// checker reads what the consumer writes; where transactions run
	// concurrently (PostgreSQL), they serialise on these keys. A store
	// whose transactions are serial already (SQLite) does nothing.
	Lock(ctx context.Context, key string) error
	FindPlan(ctx context.Context, tenantID, key string, version int) (*Plan, error)
	// FindEvent returns a stored event record. ENOTFOUND.
	FindEvent(ctx context.Context, tenantID, id string) (*SubscriptionEventRecord, error)
	// PutEvent inserts or replaces the record with r's (tenant, id).
	PutEvent(ctx context.Context, r *SubscriptionEventRecord) error
	// AddDuplicate counts one more duplicate of a stored event.
	AddDuplicate(ctx context.Context, tenantID, id string) error
	// Head returns how far a customer's events are applied (zero if none).
	Head(ctx context.Context, tenantID, customerID string) (SubscriptionHead, error)
	SetHead(ctx context.Context, h SubscriptionHead) error
	// NextHeld returns a held event of the customer whose Version is
	// version, or, failing that, whose PreviousID is previousID. ENOTFOUND.
	NextHeld(ctx context.Context, tenantID, customerID string, version int64, previousID string) (*SubscriptionEventRecord, error)
	// AppliedEvents returns the applied events of a subscription by version.
	AppliedEvents(ctx context.Context, tenantID, subscriptionID string) ([]*SubscriptionEventRecord, error)
	// FindSubscription returns one subscription. ENOTFOUND.
	FindSubscription(ctx context.Context, tenantID, id string) (*Subscription, error)
	// PutSubscription inserts or replaces s.
	PutSubscription(ctx context.Context, s *Subscription) error
	// CurrentCharges returns the subscription's charge records that are
	// not superseded.
	CurrentCharges(ctx context.Context, tenantID, subscriptionID string) ([]*Charge, error)
	// SupersedeCharges marks records as superseded at t.
	SupersedeCharges(ctx context.Context, tenantID string, ids []string, t time.Time) error
	// InsertCharges stores new records.
	InsertCharges(ctx context.Context, charges []*Charge) error
	// RaiseAlert stores a unless an alert with its (tenant, id) exists.
	RaiseAlert(ctx context.Context, a *Alert) error
	// ResolveAlert marks an open alert resolved at t (no error if absent).
	ResolveAlert(ctx context.Context, tenantID, id string, t time.Time) error
	// SetPosition records the last applied sequence of a subscription log
	// partition.
	SetPosition(ctx context.Context, partition int, seq uint64) error
}

// PhaseAt returns the phase in force at t, or nil before the start and
// from the end on.
func (s *Subscription) PhaseAt(t time.Time) *Phase {
	for i := range s.Phases {
		ph := &s.Phases[i]
		if !t.Before(ph.From) && (ph.To == nil || t.Before(*ph.To)) {
			return ph
		}
	}
	return nil
}

// StatusAt is the subscription's status at t: "pending" before its start,
// "trialing", "active", or "canceled" from its end on.
func (s *Subscription) StatusAt(t time.Time) string {
	switch {
	case s.EndsAt != nil && (!t.Before(*s.EndsAt) || !s.EndsAt.After(s.StartAt)):
		return "canceled" // ended, or canceled before it began
	case t.Before(s.StartAt):
		return "pending"
	case s.TrialEndsAt != nil && t.Before(*s.TrialEndsAt):
		return "trialing"
	}
	return "active"
}
