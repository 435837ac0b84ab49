package subscription

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
)

// Processor is the command processor: it validates a command against the
// subscription's current state, turns it into a subscription event with the
// customer's next version, appends it to the subscription log and answers
// once the consumer has applied it, with the resulting state.
//
// Commands of one customer are serialised in this process (striped locks),
// so two commands cannot take the same version here. Across processes, the
// consumer is the arbiter: a second event with a taken version is rejected,
// and the command reports the conflict (ECONFLICT) for the client to retry.
type Processor struct {
	store    abacus.Store
	log      abacus.EventLog
	consumer *Consumer
	clock    abacus.Clock
	locks    [64]sync.Mutex

	// CustomerNow, when set, tells a customer's "now" (a test clock's for
	// customers attached to one); commands resolve "now" and default
	// effective times with it. Nil: the processor's clock for everyone.
	CustomerNow func(ctx context.Context, tenantID, customerID string) (time.Time, error)
}

// NewProcessor returns a command processor writing to log, whose events
// consumer applies.
func NewProcessor(store abacus.Store, log abacus.EventLog, consumer *Consumer, clock abacus.Clock) *Processor {
	if clock == nil {
		clock = abacus.SystemClock{}
	}
	return &Processor{store: store, log: log, consumer: consumer, clock: clock}
}

// Timing says when a change or cancel takes effect.
type Timing string

// Timings of changes and cancels.
const (
	Now       Timing = "now"        // at the time of the command (or effective_at)
	PeriodEnd Timing = "period_end" // at the end of the billing period in progress
)

// CreateCommand starts a subscription.
type CreateCommand struct {
	ID            string     `json:"id,omitempty"`       // subscription id (default: generated)
	EventID       string     `json:"event_id,omitempty"` // makes a retried command a no-op
	Customer      string     `json:"customer"`
	Plan          string     `json:"plan"`
	PlanVersion   int        `json:"plan_version,omitempty"` // default: latest
	StartAt       *time.Time `json:"start_at,omitempty"`     // default: now
	BillingAnchor string     `json:"billing_anchor,omitempty"`
}

// ChangeCommand moves a subscription to another plan (or plan version).
// Without Timing, an upgrade takes effect now and a downgrade at the end of
// the period (see Direction). EffectiveAt, when given, overrides Timing.
type ChangeCommand struct {
	EventID     string     `json:"event_id,omitempty"`
	Plan        string     `json:"plan"`
	PlanVersion int        `json:"plan_version,omitempty"`
	Timing      Timing     `json:"timing,omitempty"`
	EffectiveAt *time.Time `json:"effective_at,omitempty"`
}

// CancelCommand ends a subscription now (default) or at the period end.
type CancelCommand struct {
	EventID     string     `json:"event_id,omitempty"`
	Timing      Timing     `json:"timing,omitempty"`
	EffectiveAt *time.Time `json:"effective_at,omitempty"`
}

// DiscountCommand applies a discount from EffectiveAt (default now).
type DiscountCommand struct {
	EventID     string          `json:"event_id,omitempty"`
	Discount    abacus.Discount `json:"discount"`
	EffectiveAt *time.Time      `json:"effective_at,omitempty"`
}

// RemoveDiscountCommand removes a discount from EffectiveAt (default now).
type RemoveDiscountCommand struct {
	EventID     string     `json:"event_id,omitempty"`
	Key         string     `json:"key"`
	EffectiveAt *time.Time `json:"effective_at,omitempty"`
}

// Create starts a subscription.
func (p *Processor) Create(ctx context.Context, tenant string, cmd CreateCommand) (*abacus.Subscription, error) {
	if sub, done, err := p.replay(ctx, tenant, cmd.EventID, abacus.SubStart, cmd.ID); done {
		return sub, err
	}
	var pr abacus.Problems
	if cmd.Customer == "" {
		pr.Add("customer", "is required")
	}
	if cmd.Plan == "" {
		pr.Add("plan", "is required")
	}
	if cmd.ID == "" && cmd.EventID != "" {
		cmd.ID = "sub_" + shortHash(tenant+"\x00"+cmd.EventID) // a retry names the same subscription
	} else if cmd.ID == "" {
		cmd.ID = newID("sub_")
	} else if !keyPattern.MatchString(cmd.ID) {
		pr.Add("id", "must be 1-128 characters of letters, digits, '_', '.', ':' or '-'")
	}
	if cmd.BillingAnchor == "" {
		cmd.BillingAnchor = abacus.AnchorCalendar
	}
	if cmd.BillingAnchor != abacus.AnchorCalendar && cmd.BillingAnchor != abacus.AnchorAnniversary {
		pr.Add("billing_anchor", "must be calendar or anniversary, got %q", cmd.BillingAnchor)
	}
	if err := pr.Err(); err != nil {
		return nil, err
	}
	cust, err := p.store.FindCustomer(ctx, tenant, cmd.Customer)
	if err != nil {
		return nil, notFoundField(err, "customer", cmd.Customer)
	}
	plan, err := p.store.FindPlan(ctx, tenant, cmd.Plan, cmd.PlanVersion)
	if err != nil {
		return nil, notFoundField(err, "plan", cmd.Plan)
	}
	if _, err := p.store.FindSubscription(ctx, tenant, cmd.ID); err == nil {
		return nil, abacus.Errorf(abacus.ECONFLICT, "subscription %s exists", cmd.ID)
	}
	start, err := p.at(ctx, tenant, cust.ID, cmd.StartAt)
	if err != nil {
		return nil, err
	}
	e := &abacus.SubscriptionEvent{ID: cmd.EventID, CustomerID: cust.ID, SubscriptionID: cmd.ID, Type: abacus.SubStart,
		EffectiveAt: start, Plan: &abacus.PlanRef{Key: plan.Key, Version: plan.Version},
		Anchor: cmd.BillingAnchor, TimeZone: cust.TimeZone}
	return p.submit(ctx, tenant, e)
}

// Change moves a subscription to another plan.
func (p *Processor) Change(ctx context.Context, tenant, subID string, cmd ChangeCommand) (*abacus.Subscription, error) {
	if sub, done, err := p.replay(ctx, tenant, cmd.EventID, abacus.SubChange, subID); done {
		return sub, err
	}
	sub, err := p.subscription(ctx, tenant, subID)
	if err != nil {
		return nil, err
	}
	if cmd.Plan == "" {
		return nil, abacus.Errorf(abacus.EINVALID, "plan: is required")
	}
	plan, err := p.store.FindPlan(ctx, tenant, cmd.Plan, cmd.PlanVersion)
	if err != nil {
		return nil, notFoundField(err, "plan", cmd.Plan)
	}
	now, err := p.now(ctx, tenant, sub.CustomerID)
	if err != nil {
		return nil, err
	}
	current := sub.PhaseAt(now)
	if cmd.Timing == "" && cmd.EffectiveAt == nil && current != nil {
		from, err := p.store.FindPlan(ctx, tenant, current.Plan.Key, current.Plan.Version)
		if err != nil {
			return nil, err
		}
		cmd.Timing = Now
		if Direction(from, plan) == Downgrade {
			cmd.Timing = PeriodEnd
		}
	}
	at, err := p.effective(sub, cmd.Timing, cmd.EffectiveAt, now)
	if err != nil {
		return nil, err
	}
	ref := abacus.PlanRef{Key: plan.Key, Version: plan.Version}
	if n := len(sub.Phases); n > 0 && sub.Phases[n-1].Plan == ref && !at.Before(sub.Phases[n-1].From) && (sub.EndsAt == nil || at.Before(*sub.EndsAt)) {
		return nil, abacus.Errorf(abacus.ECONFLICT, "subscription %s is already on plan %s v%d at %s", subID, plan.Key, plan.Version, stamp(at))
	}
	e := &abacus.SubscriptionEvent{ID: cmd.EventID, CustomerID: sub.CustomerID, SubscriptionID: sub.ID, Type: abacus.SubChange,
		EffectiveAt: at, Plan: &ref}
	return p.submit(ctx, tenant, e)
}

// Cancel ends a subscription.
func (p *Processor) Cancel(ctx context.Context, tenant, subID string, cmd CancelCommand) (*abacus.Subscription, error) {
	if sub, done, err := p.replay(ctx, tenant, cmd.EventID, abacus.SubCancel, subID); done {
		return sub, err
	}
	sub, err := p.subscription(ctx, tenant, subID)
	if err != nil {
		return nil, err
	}
	now, err := p.now(ctx, tenant, sub.CustomerID)
	if err != nil {
		return nil, err
	}
	at, err := p.effective(sub, cmd.Timing, cmd.EffectiveAt, now)
	if err != nil {
		return nil, err
	}
	e := &abacus.SubscriptionEvent{ID: cmd.EventID, CustomerID: sub.CustomerID, SubscriptionID: sub.ID, Type: abacus.SubCancel, EffectiveAt: at}
	return p.submit(ctx, tenant, e)
}

// ApplyDiscount applies (or replaces) a discount.
func (p *Processor) ApplyDiscount(ctx context.Context, tenant, subID string, cmd DiscountCommand) (*abacus.Subscription, error) {
	if sub, done, err := p.replay(ctx, tenant, cmd.EventID, abacus.SubDiscount, subID); done {
		return sub, err
	}
	sub, err := p.subscription(ctx, tenant, subID)
	if err != nil {
		return nil, err
	}
	at, err := p.at(ctx, tenant, sub.CustomerID, cmd.EffectiveAt)
	if err != nil {
		return nil, err
	}
	if err := ValidateDiscount(&cmd.Discount, at); err != nil {
		return nil, err
	}
	d := cmd.Discount
	e := &abacus.SubscriptionEvent{ID: cmd.EventID, CustomerID: sub.CustomerID, SubscriptionID: sub.ID, Type: abacus.SubDiscount,
		EffectiveAt: at, Discount: &d}
	return p.submit(ctx, tenant, e)
}

// RemoveDiscount removes a discount.
func (p *Processor) RemoveDiscount(ctx context.Context, tenant, subID string, cmd RemoveDiscountCommand) (*abacus.Subscription, error) {
	if sub, done, err := p.replay(ctx, tenant, cmd.EventID, abacus.SubRemoveDiscount, subID); done {
		return sub, err
	}
	if !keyPattern.MatchString(cmd.Key) {
		return nil, abacus.Errorf(abacus.EINVALID, "key: must name a discount (1-128 characters of letters, digits, '_', '.', ':' or '-')")
	}
	sub, err := p.subscription(ctx, tenant, subID)
	if err != nil {
		return nil, err
	}
	at, err := p.at(ctx, tenant, sub.CustomerID, cmd.EffectiveAt)
	if err != nil {
		return nil, err
	}
	e := &abacus.SubscriptionEvent{ID: cmd.EventID, CustomerID: sub.CustomerID, SubscriptionID: sub.ID, Type: abacus.SubRemoveDiscount,
		EffectiveAt: at, DiscountKey: cmd.Key}
	return p.submit(ctx, tenant, e)
}

// replay answers a retried command, one whose event_id is stored, with the
// first one's result (done). Another command reusing the id is a conflict.
func (p *Processor) replay(ctx context.Context, tenant, eventID string, typ abacus.SubscriptionEventType, subID string) (*abacus.Subscription, bool, error) {
	if eventID == "" {
		return nil, false, nil
	}
	if len(eventID) > abacus.MaxIDLength {
		return nil, true, abacus.Errorf(abacus.EINVALID, "event_id: at most %d bytes", abacus.MaxIDLength)
	}
	rec, err := p.store.FindSubscriptionEvent(ctx, tenant, eventID)
	if abacus.ErrorCode(err) == abacus.ENOTFOUND {
		return nil, false, nil
	} else if err != nil {
		return nil, true, err
	}
	if rec.Type != typ || (subID != "" && rec.SubscriptionID != subID) {
		return nil, true, abacus.Errorf(abacus.ECONFLICT, "event_id %s was already used for a %s of subscription %s", eventID, rec.Type, rec.SubscriptionID)
	}
	sub, err := p.outcome(ctx, rec)
	return sub, true, err
}

func (p *Processor) subscription(ctx context.Context, tenant, id string) (*abacus.Subscription, error) {
	sub, err := p.store.FindSubscription(ctx, tenant, id)
	if abacus.ErrorCode(err) == abacus.ENOTFOUND {
		return nil, abacus.Errorf(abacus.ENOTFOUND, "subscription %s not found", id)
	}
	return sub, err
}

func (p *Processor) at(ctx context.Context, tenant, customer string, t *time.Time) (time.Time, error) {
	if t != nil {
		return t.UTC(), nil
	}
	return p.now(ctx, tenant, customer)
}

// now is the customer's time.
func (p *Processor) now(ctx context.Context, tenant, customer string) (time.Time, error) {
	if p.CustomerNow == nil {
		return p.clock.Now().UTC(), nil
	}
	t, err := p.CustomerNow(ctx, tenant, customer)
	return t.UTC(), err
}

// effective resolves when a change or cancel takes effect.
func (p *Processor) effective(sub *abacus.Subscription, timing Timing, at *time.Time, now time.Time) (time.Time, error) {
	switch {
	case timing != "" && timing != Now && timing != PeriodEnd:
		return time.Time{}, abacus.Errorf(abacus.EINVALID, "timing: must be now or period_end, got %q", timing)
	case at != nil && timing != "":
		return time.Time{}, abacus.Errorf(abacus.EINVALID, "timing: give timing or effective_at, not both")
	case at != nil:
		return at.UTC(), nil
	case timing == "" || timing == Now:
		return maxTime(now, sub.StartAt), nil // a pending subscription changes from its start
	case timing == PeriodEnd:
		sch, err := Schedule(sub)
		if err != nil {
			return time.Time{}, err
		}
		t := maxTime(now, sub.StartAt)
		if sub.TrialEndsAt != nil && t.Before(*sub.TrialEndsAt) {
			return sub.TrialEndsAt.UTC(), nil // the trial is the period in progress
		}
		return sch.PeriodAt(t).End.UTC(), nil
	}
	panic("unreachable: timing checked above")
}

// submit gives e the customer's next version, checks it against the
// history, appends it and waits until the consumer has applied it.
func (p *Processor) submit(ctx context.Context, tenant string, e *abacus.SubscriptionEvent) (*abacus.Subscription, error) {
	e.TenantID, e.Source, e.ReceivedAt = tenant, "api", p.clock.Now().UTC()
	if r := TimeProblem(e.EffectiveAt); r != "" {
		return nil, abacus.Errorf(abacus.EINVALID, "effective time: %s", r)
	}
	retry := e.ID != ""
	if !retry {
		e.ID = newID("sev_")
	}
	mu := &p.locks[abacus.Partition(tenant, e.CustomerID, len(p.locks))]
	mu.Lock()
	defer mu.Unlock()
	part := abacus.Partition(tenant, e.CustomerID, p.log.Partitions())
	// Read the state only after everything already on the log is applied.
	last, err := p.log.LastSequence(ctx, part)
	if err != nil {
		return nil, unavailable(err)
	}
	if err := p.waitApplied(ctx, map[int]uint64{part: last}); err != nil {
		return nil, err
	}
	if retry { // the first attempt may have been appended since replay looked
		if sub, done, err := p.replay(ctx, tenant, e.ID, e.Type, e.SubscriptionID); done {
			return sub, err
		}
	}
	held, err := p.store.ListSubscriptionEvents(ctx, abacus.SubscriptionEventFilter{TenantID: tenant, CustomerID: e.CustomerID, Status: abacus.SubEventHeld})
	if err != nil {
		return nil, err
	}
	if len(held) > 0 {
		// An external producer owns this customer's order and a version is
		// missing: a command would take the missing version's place.
		return nil, abacus.Errorf(abacus.ECONFLICT, "customer %s has %d subscription event(s) held for a missing predecessor (e.g. %s); commands wait until the gap is filled",
			e.CustomerID, len(held), held[0].ID)
	}
	head, err := p.store.SubscriptionHead(ctx, tenant, e.CustomerID)
	if err != nil {
		return nil, err
	}
	e.Version = head.Version + 1
	history, err := p.store.ListSubscriptionEvents(ctx, abacus.SubscriptionEventFilter{TenantID: tenant, SubscriptionID: e.SubscriptionID, Status: abacus.SubEventApplied})
	if err != nil {
		return nil, err
	}
	events := make([]*abacus.SubscriptionEvent, 0, len(history)+1)
	for _, h := range history {
		events = append(events, &h.SubscriptionEvent)
	}
	_, _, err = Derive(append(events, e), func(ref abacus.PlanRef) (*abacus.Plan, error) {
		return p.store.FindPlan(ctx, tenant, ref.Key, ref.Version)
	})
	var rej *RejectError
	if errors.As(err, &rej) {
		return nil, abacus.Errorf(abacus.ECONFLICT, "%s", rej.Reason)
	} else if err != nil {
		return nil, err
	}
	msg, err := EncodeMessage([]*abacus.SubscriptionEvent{e})
	if err != nil {
		return nil, err
	}
	seq, err := p.log.Append(ctx, part, msg)
	if err != nil {
		return nil, err
	}
	if err := p.waitApplied(ctx, map[int]uint64{part: seq}); err != nil {
		return nil, err
	}
	rec, err := p.store.FindSubscriptionEvent(ctx, tenant, e.ID)
	if err != nil {
		return nil, err
	}
	return p.outcome(ctx, rec)
}

// outcome answers a command from its applied (or rejected) event.
func (p *Processor) outcome(ctx context.Context, rec *abacus.SubscriptionEventRecord) (*abacus.Subscription, error) {
	if rec.Status == abacus.SubEventRejected {
		return nil, abacus.Errorf(abacus.ECONFLICT, "event %s was rejected: %s", rec.ID, rec.Reason)
	}
	return p.store.FindSubscription(ctx, rec.TenantID, rec.SubscriptionID)
}

// ApplyTimeout bounds how long a command waits for the consumer.
const ApplyTimeout = 30 * time.Second

// waitApplied waits, at most ApplyTimeout, until the consumer has applied
// the log up to want.
func (p *Processor) waitApplied(ctx context.Context, want map[int]uint64) error {
	ctx, cancel := context.WithTimeout(ctx, ApplyTimeout)
	defer cancel()
	if err := p.consumer.WaitApplied(ctx, want); err != nil {
		return abacus.Errorf(abacus.EUNAVAILABLE, "the subscription consumer has not applied the log in time (%v); the command may still apply: retry with the same event_id", err)
	}
	return nil
}

func unavailable(err error) error {
	if abacus.ErrorCode(err) != abacus.EINTERNAL {
		return err
	}
	return abacus.Errorf(abacus.EUNAVAILABLE, "subscription log: %v", err)
}

func notFoundField(err error, field, id string) error {
	if abacus.ErrorCode(err) == abacus.ENOTFOUND {
		return abacus.Errorf(abacus.EINVALID, "%s: %q does not exist", field, id)
	}
	return err
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}

func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
