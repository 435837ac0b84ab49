package subscription

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/ingest"
)

// MaxExternalEvents bounds the events of one POST /v1/subscription-events.
const MaxExternalEvents = 1000

// ExternalEvent is a subscription event as an external producer (a CRM)
// sends it. Plans are named by key and, optionally, version (default: the
// latest when Abacus accepts the event; the resolved version travels with
// the event, so replays apply the same plan).
type ExternalEvent struct {
	ID            string                       `json:"id"`
	Customer      string                       `json:"customer"`
	Subscription  string                       `json:"subscription"`
	Type          abacus.SubscriptionEventType `json:"type"`
	EffectiveAt   *time.Time                   `json:"effective_at"`
	Version       int64                        `json:"version,omitempty"`
	PreviousID    string                       `json:"previous_id,omitempty"`
	Plan          string                       `json:"plan,omitempty"`
	PlanVersion   int                          `json:"plan_version,omitempty"`
	BillingAnchor string                       `json:"billing_anchor,omitempty"`
	Discount      *abacus.Discount             `json:"discount,omitempty"`
	DiscountKey   string                       `json:"discount_key,omitempty"`
}

// AcceptResult is the answer to a batch of external events: every event is
// either accepted (appended to the log, durable) or listed in Rejected with
// its index, id, field and reason. With wait, Statuses has the outcome of
// each accepted event once the consumer has applied the batch.
type AcceptResult struct {
	Accepted int                `json:"accepted"`
	Rejected []ingest.Rejection `json:"rejected"`
	Statuses []EventStatus      `json:"statuses,omitempty"`
}

// EventStatus is where one accepted event stands.
type EventStatus struct {
	ID      string                         `json:"id"`
	Status  abacus.SubscriptionEventStatus `json:"status"`
	Version int64                          `json:"version,omitempty"`
	Reason  string                         `json:"reason,omitempty"`
}

// Accept validates external events one by one, appends the valid ones to
// the subscription log (one append per partition) and returns once they are
// durable; with wait, once they are applied. Ordering, holding and
// duplicates are the consumer's business: events may come in any order and
// any number of times.
func (p *Processor) Accept(ctx context.Context, tenant string, in []json.RawMessage, wait bool) (*AcceptResult, error) {
	if len(in) > MaxExternalEvents {
		return nil, abacus.Errorf(abacus.ETOOLARGE, "%d events in one request; the limit is %d", len(in), MaxExternalEvents)
	}
	res := &AcceptResult{Rejected: []ingest.Rejection{}}
	now := p.clock.Now().UTC()
	byPart := map[int][]*abacus.SubscriptionEvent{}
	var accepted []*abacus.SubscriptionEvent
	seen := map[string]bool{}
	for i, raw := range in {
		x, field, reason := decodeExternal(raw)
		var e *abacus.SubscriptionEvent
		if reason == "" {
			e, field, reason = p.resolve(ctx, tenant, &x, now)
		}
		if reason == "" && seen[x.ID] {
			// Both would reach the log; the second would be discarded as a
			// duplicate anyway. Say so now.
			field, reason = "id", "appears earlier in this request"
		}
		if reason != "" {
			res.Rejected = append(res.Rejected, ingest.Rejection{Index: i, ID: x.ID, Field: field, Reason: reason})
			continue
		}
		seen[x.ID] = true
		part := abacus.Partition(tenant, e.CustomerID, p.log.Partitions())
		byPart[part] = append(byPart[part], e)
		accepted = append(accepted, e)
	}
	// Encode every partition's message before appending any: a request
	// is refused whole (413) or appended whole.
	msgs := map[int][]byte{}
	for part, events := range byPart {
		msg, err := EncodeMessage(events)
		if err != nil {
			return nil, err
		}
		if len(msg) > p.log.MaxMessageBytes() {
			return nil, abacus.Errorf(abacus.ETOOLARGE, "the events of one partition take %d bytes; the log takes %d per message: send fewer events per request", len(msg), p.log.MaxMessageBytes())
		}
		msgs[part] = msg
	}
	want := map[int]uint64{}
	for part, msg := range msgs {
		seq, err := p.log.Append(ctx, part, msg)
		if err != nil {
			return nil, err // the producer resends; what was appended is discarded as duplicates
		}
		want[part] = seq
	}
	res.Accepted = len(accepted)
	if !wait || len(accepted) == 0 {
		return res, nil
	}
	if err := p.waitApplied(ctx, want); err != nil {
		return nil, err
	}
	for _, e := range accepted {
		rec, err := p.store.FindSubscriptionEvent(ctx, tenant, e.ID)
		if err != nil {
			return nil, err
		}
		res.Statuses = append(res.Statuses, EventStatus{ID: rec.ID, Status: rec.Status, Version: rec.Version, Reason: rec.Reason})
	}
	return res, nil
}

// resolve checks one external event and resolves what must not change on
// replay (plan version, time zone). It returns the field and reason of the
// first problem.
func (p *Processor) resolve(ctx context.Context, tenant string, x *ExternalEvent, now time.Time) (*abacus.SubscriptionEvent, string, string) {
	if r := abacus.IDProblem(x.ID, abacus.MaxIDLength); r != "" {
		return nil, "id", r
	}
	if r := abacus.IDProblem(x.Customer, abacus.MaxIDLength); r != "" {
		return nil, "customer", r
	}
	switch {
	case !keyPattern.MatchString(x.Subscription):
		return nil, "subscription", "is required: 1-128 characters of letters, digits, '_', '.', ':' or '-'"
	case x.EffectiveAt == nil:
		return nil, "effective_at", "is required (RFC 3339)"
	case TimeProblem(*x.EffectiveAt) != "":
		return nil, "effective_at", TimeProblem(*x.EffectiveAt)
	case x.Version < 0:
		return nil, "version", "must be positive"
	case x.Version == 0 && x.PreviousID == "":
		return nil, "version", "version or previous_id is required (the first event of a customer has version 1)"
	case x.Version > 0 && x.PreviousID != "":
		return nil, "previous_id", "give version or previous_id, not both"
	case x.PreviousID == x.ID:
		return nil, "previous_id", "an event cannot follow itself"
	}
	if x.PreviousID != "" {
		if r := abacus.IDProblem(x.PreviousID, abacus.MaxIDLength); r != "" {
			return nil, "previous_id", r
		}
		if prev, err := p.store.FindSubscriptionEvent(ctx, tenant, x.PreviousID); err == nil && prev.CustomerID != x.Customer {
			return nil, "previous_id", fmt.Sprintf("event %s is an event of customer %s, not %s", prev.ID, prev.CustomerID, x.Customer)
		}
	}
	e := &abacus.SubscriptionEvent{TenantID: tenant, ID: x.ID, CustomerID: x.Customer, SubscriptionID: x.Subscription, Type: x.Type,
		EffectiveAt: x.EffectiveAt.UTC(), Version: x.Version, PreviousID: x.PreviousID, Source: "external", ReceivedAt: now}
	if sub, err := p.store.FindSubscription(ctx, tenant, x.Subscription); err == nil && sub.CustomerID != x.Customer {
		return nil, "subscription", fmt.Sprintf("subscription %s belongs to customer %s, not %s", x.Subscription, sub.CustomerID, x.Customer)
	}
	needPlan := false
	switch x.Type {
	case abacus.SubStart:
		needPlan = true
		e.Anchor = x.BillingAnchor
		if e.Anchor == "" {
			e.Anchor = abacus.AnchorCalendar
		}
		if e.Anchor != abacus.AnchorCalendar && e.Anchor != abacus.AnchorAnniversary {
			return nil, "billing_anchor", fmt.Sprintf("must be calendar or anniversary, got %q", x.BillingAnchor)
		}
		c, err := p.store.FindCustomer(ctx, tenant, x.Customer)
		if abacus.ErrorCode(err) == abacus.ENOTFOUND {
			return nil, "customer", fmt.Sprintf("customer %q does not exist; create it before its subscription starts", x.Customer)
		} else if err != nil {
			return nil, "customer", abacus.ErrorMessage(err)
		}
		e.TimeZone = c.TimeZone
	case abacus.SubChange:
		needPlan = true
	case abacus.SubCancel:
	case abacus.SubDiscount:
		if x.Discount == nil {
			return nil, "discount", "is required for a discount event"
		}
		d := *x.Discount
		if l := discountProblems(&d, e.EffectiveAt).List(); len(l) > 0 {
			return nil, l[0].Field, l[0].Reason
		}
		e.Discount = &d
	case abacus.SubRemoveDiscount:
		if !keyPattern.MatchString(x.DiscountKey) {
			return nil, "discount_key", "is required for a remove_discount event: 1-128 characters of letters, digits, '_', '.', ':' or '-'"
		}
		e.DiscountKey = x.DiscountKey
	default:
		return nil, "type", fmt.Sprintf("must be start, change, cancel, discount or remove_discount, got %q", x.Type)
	}
	if needPlan {
		if x.Plan == "" {
			return nil, "plan", "is required for a " + string(x.Type) + " event"
		}
		plan, err := p.store.FindPlan(ctx, tenant, x.Plan, x.PlanVersion)
		if abacus.ErrorCode(err) == abacus.ENOTFOUND {
			return nil, "plan", fmt.Sprintf("plan %q version %d does not exist (0 = latest)", x.Plan, x.PlanVersion)
		} else if err != nil {
			return nil, "plan", abacus.ErrorMessage(err)
		}
		e.Plan = &abacus.PlanRef{Key: plan.Key, Version: plan.Version}
	} else if x.Plan != "" {
		return nil, "plan", "only start and change events name a plan"
	}
	return e, "", ""
}

// SplitBody reads a request body holding one event object or an array of
// them into the raw events, which Accept decodes one by one (so that one
// malformed event does not cost the others).
func SplitBody(body []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return []json.RawMessage{trimmed}, nil
	}
	var out []json.RawMessage
	if err := json.Unmarshal(trimmed, &out); err != nil {
		return nil, abacus.Errorf(abacus.EINVALID, "body: want a JSON object or an array of objects: %v", err)
	}
	return out, nil
}

func decodeExternal(raw json.RawMessage) (ExternalEvent, string, string) {
	var x ExternalEvent
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&x); err != nil {
		var ute *json.UnmarshalTypeError
		var pe *time.ParseError
		if errors.As(err, &pe) {
			return x, badTimeField(raw), fmt.Sprintf("must be an RFC 3339 time such as 2026-01-31T00:00:00Z, got %q", pe.Value)
		}
		if errors.As(err, &ute) {
			return x, ute.Field, fmt.Sprintf("must be a JSON %s, got %s", ute.Type, ute.Value)
		}
		msg := strings.TrimPrefix(err.Error(), "json: ")
		if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
			return x, strings.Trim(f, `"`), "unknown field"
		}
		return x, "", msg
	}
	return x, "", ""
}

// badTimeField names the time field of raw that does not parse (the JSON
// decoder's time errors carry no field name).
func badTimeField(raw json.RawMessage) string {
	var probe struct {
		EffectiveAt json.RawMessage `json:"effective_at"`
	}
	_ = json.Unmarshal(raw, &probe)
	var t time.Time
	if len(probe.EffectiveAt) > 0 && t.UnmarshalJSON(probe.EffectiveAt) != nil {
		return "effective_at"
	}
	return "discount.until"
}
