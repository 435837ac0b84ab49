// Package subscription runs the subscriptions of Abacus: plans, the command
// processor that turns API commands into subscription events, the consumer
// that applies the events of each customer strictly in order (holding those
// that arrive early), and the derivation of effective-dated charges from an
// ordered history.
//
// # Semantics of a history
//
// A subscription's applied events, in version order, are folded into a
// timeline (see Derive). Each event states one term of the subscription from
// its effective time on:
//
//   - start: the subscription begins at the effective time on a plan.
//   - change: the plan in force from the effective time on.
//   - discount / remove_discount: whether a discount (by key) is in force
//     from the effective time on.
//   - cancel: the subscription ends at the effective time.
//
// "From the effective time on" overrides what earlier-applied events said
// about the same term from that time on: a late change effective Jan 10,
// applied after a change effective Feb 1, decides the plan from Jan 10 on
// (the later-applied event is the producer's newer word). So the charges of
// the latest applied event are always the ones in force at the end of the
// timeline. An event that cannot apply to the history (a change after the
// end, a second start, another currency) is rejected with a reason and
// changes nothing.
package subscription

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/billing"
	"github.com/cockroachdb/apd/v3"
)

// PlanSource finds plan versions for a derivation.
type PlanSource func(ref abacus.PlanRef) (*abacus.Plan, error)

// RejectError is an event that cannot apply to a subscription's history.
type RejectError struct{ Reason string }

func (e *RejectError) Error() string { return e.Reason }

func reject(format string, args ...any) error {
	return &RejectError{Reason: fmt.Sprintf(format, args...)}
}

// point is one statement of a term from a time on.
type point[T any] struct {
	at      time.Time
	version int64
	eventID string
	value   T
}

// history is the fold of a subscription's applied events.
type history struct {
	sub       abacus.Subscription
	started   bool
	startID   string
	startVer  int64
	loc       *time.Location
	plans     []point[abacus.PlanRef]
	discounts map[string][]point[*abacus.Discount] // a nil value removes
	planOf    map[abacus.PlanRef]*abacus.Plan
	endID     string
	endVer    int64
	causes    [][]cut // the cuts at the start of each phase, newest first
}

// set states value from at on, dropping what the term said from at on.
func set[T any](pts []point[T], p point[T]) []point[T] {
	pts = slices.DeleteFunc(pts, func(q point[T]) bool { return !q.at.Before(p.at) })
	return append(pts, p)
}

// valueAt returns the term's value at t and whether any point covers t.
func valueAt[T any](pts []point[T], t time.Time) (T, bool) {
	var v T
	ok := false
	for _, p := range pts { // sorted by at: set appends after deleting later ones
		if p.at.After(t) {
			break
		}
		v, ok = p.value, true
	}
	return v, ok
}

// Derive folds the applied events of one subscription (in version order)
// into its read model and the charge records in force. It returns a
// *RejectError naming the first event that cannot apply; the consumer
// calls it with the stored history plus one new event, so that error
// rejects the new event.
func Derive(events []*abacus.SubscriptionEvent, plans PlanSource) (*abacus.Subscription, []*abacus.Charge, error) {
	h := &history{discounts: map[string][]point[*abacus.Discount]{}, planOf: map[abacus.PlanRef]*abacus.Plan{}}
	for _, e := range events {
		if err := h.apply(e, plans); err != nil {
			return nil, nil, err
		}
	}
	if !h.started {
		return nil, nil, reject("no start event")
	}
	sub := h.sub
	last := events[len(events)-1]
	sub.Version, sub.LastEventID = last.Version, last.ID
	sub.Phases = h.phases()
	return &sub, h.charges(sub.Phases), nil
}

func (h *history) apply(e *abacus.SubscriptionEvent, plans PlanSource) error {
	if r := TimeProblem(e.EffectiveAt); r != "" {
		return reject("effective_at %s", r)
	}
	if e.Type == abacus.SubStart {
		return h.start(e, plans)
	}
	if !h.started {
		return reject("subscription %s has no applied start event", e.SubscriptionID)
	}
	if e.EffectiveAt.Before(h.sub.StartAt) {
		return reject("effective_at %s is before the subscription's start %s", stamp(e.EffectiveAt), stamp(h.sub.StartAt))
	}
	if end := h.sub.EndsAt; end != nil && !e.EffectiveAt.Before(*end) {
		return reject("the subscription ends at %s (event %s); a %s effective at %s is not before its end", stamp(*end), h.endID, e.Type, stamp(e.EffectiveAt))
	}
	switch e.Type {
	case abacus.SubChange:
		if e.Plan == nil {
			return reject("a change names a plan")
		}
		p, err := h.plan(*e.Plan, plans)
		if err != nil {
			return err
		}
		if p.Currency != h.sub.Currency {
			return reject("plan %s v%d is in %s; the subscription bills in %s (start a new subscription to change currency)", p.Key, p.Version, p.Currency, h.sub.Currency)
		}
		if p.Interval != h.sub.Interval || p.IntervalCount != h.sub.IntervalCount {
			return reject("plan %s v%d bills every %d %s; the subscription bills every %d %s (start a new subscription to change the billing interval)",
				p.Key, p.Version, p.IntervalCount, p.Interval, h.sub.IntervalCount, h.sub.Interval)
		}
		h.plans = set(h.plans, point[abacus.PlanRef]{e.EffectiveAt, e.Version, e.ID, *e.Plan})
	case abacus.SubCancel:
		t := e.EffectiveAt
		h.sub.EndsAt, h.endID, h.endVer = &t, e.ID, e.Version
	case abacus.SubDiscount:
		d := e.Discount
		if d == nil {
			return reject("a discount event carries a discount")
		}
		if err := ValidateDiscount(d, e.EffectiveAt); err != nil {
			return reject("%s", abacus.ErrorMessage(err))
		}
		h.discounts[d.Key] = set(h.discounts[d.Key], point[*abacus.Discount]{e.EffectiveAt, e.Version, e.ID, d})
	case abacus.SubRemoveDiscount:
		d, _ := valueAt(h.discounts[e.DiscountKey], e.EffectiveAt)
		if d == nil || (d.Until != nil && !d.Until.After(e.EffectiveAt)) {
			return reject("discount %q is not in force at %s", e.DiscountKey, stamp(e.EffectiveAt))
		}
		h.discounts[e.DiscountKey] = set(h.discounts[e.DiscountKey], point[*abacus.Discount]{e.EffectiveAt, e.Version, e.ID, nil})
	default:
		return reject("unknown event type %q", e.Type)
	}
	return nil
}

func (h *history) start(e *abacus.SubscriptionEvent, plans PlanSource) error {
	if h.started {
		return reject("subscription %s already started (event %s)", e.SubscriptionID, h.startID)
	}
	if e.Plan == nil {
		return reject("a start names a plan")
	}
	p, err := h.plan(*e.Plan, plans)
	if err != nil {
		return err
	}
	loc, err := time.LoadLocation(e.TimeZone)
	if err != nil || e.TimeZone == "" || e.TimeZone == "Local" {
		return reject("time zone %q is not an IANA zone", e.TimeZone)
	}
	s := &h.sub
	s.ID, s.CustomerID, s.TimeZone = e.SubscriptionID, e.CustomerID, e.TimeZone
	s.Currency, s.Interval, s.IntervalCount = p.Currency, p.Interval, p.IntervalCount
	s.StartAt = e.EffectiveAt.UTC()
	billingStart := s.StartAt
	if p.TrialDays > 0 {
		end := billing.AddDays(s.StartAt, p.TrialDays, loc).UTC()
		s.TrialEndsAt, billingStart = &end, end
	}
	s.Anchor = e.Anchor
	switch e.Anchor {
	case abacus.AnchorAnniversary:
		s.AnchorAt = billingStart
	case abacus.AnchorCalendar:
		s.AnchorAt = billing.CalendarAnchor(p.Interval, billingStart, loc).UTC()
	default:
		return reject("billing_anchor must be calendar or anniversary, got %q", e.Anchor)
	}
	h.loc, h.started, h.startID, h.startVer = loc, true, e.ID, e.Version
	h.plans = []point[abacus.PlanRef]{{s.StartAt, e.Version, e.ID, *e.Plan}}
	return nil
}

func (h *history) plan(ref abacus.PlanRef, plans PlanSource) (*abacus.Plan, error) {
	if p, ok := h.planOf[ref]; ok {
		return p, nil
	}
	p, err := plans(ref)
	if abacus.ErrorCode(err) == abacus.ENOTFOUND {
		return nil, reject("plan %s version %d does not exist", ref.Key, ref.Version)
	}
	if err != nil {
		return nil, err
	}
	h.planOf[ref] = p
	return p, nil
}

// cut is a boundary of the timeline and the newest event that put it there.
type cut struct {
	at      time.Time
	version int64
	eventID string
	items   []string // the plan items it can change; empty: all
}

// phases cuts the timeline at every change and merges neighbours with the
// same terms.
func (h *history) phases() []abacus.Phase {
	s := &h.sub
	all := []cut{{s.StartAt, h.startVer, h.startID, nil}}
	add := func(at time.Time, version int64, id string, items []string) {
		if at.Before(s.StartAt) || (s.EndsAt != nil && !at.Before(*s.EndsAt)) {
			return
		}
		all = append(all, cut{at, version, id, items})
	}
	for _, p := range h.plans {
		add(p.at, p.version, p.eventID, nil)
	}
	if s.TrialEndsAt != nil {
		add(*s.TrialEndsAt, h.startVer, h.startID, nil)
	}
	for _, pts := range h.discounts {
		for i, p := range pts {
			var items []string // a removal may end a discount of any items
			if p.value != nil {
				items = p.value.Items
			}
			add(p.at, p.version, p.eventID, items)
			// An until ends the discount only if no later statement about
			// it came first.
			if p.value != nil && p.value.Until != nil && (i+1 == len(pts) || p.value.Until.Before(pts[i+1].at)) {
				add(*p.value.Until, p.version, p.eventID, items)
			}
		}
	}
	// Sort by time, the newest event first at one instant; each phase
	// keeps every cut at its start, so that a charge record can name the
	// newest event that changed its own item.
	sort.Slice(all, func(i, j int) bool {
		if !all[i].at.Equal(all[j].at) {
			return all[i].at.Before(all[j].at)
		}
		return all[i].version > all[j].version
	})
	var groups [][]cut
	for _, c := range all {
		if n := len(groups); n > 0 && groups[n-1][0].at.Equal(c.at) {
			groups[n-1] = append(groups[n-1], c)
		} else {
			groups = append(groups, []cut{c})
		}
	}
	cuts := make([]cut, len(groups))
	for i, g := range groups {
		cuts[i] = g[0]
	}

	out := []abacus.Phase{}
	h.causes = h.causes[:0]
	for i, c := range cuts {
		ph := abacus.Phase{From: c.at.UTC()}
		if i+1 < len(cuts) {
			t := cuts[i+1].at.UTC()
			ph.To = &t
		} else if s.EndsAt != nil {
			t := s.EndsAt.UTC()
			ph.To = &t
		}
		ph.Plan, _ = valueAt(h.plans, c.at)
		ph.Trial = s.TrialEndsAt != nil && c.at.Before(*s.TrialEndsAt)
		ph.Discounts = h.discountsAt(c.at)
		if n := len(out); n > 0 && sameTerms(&out[n-1], &ph) {
			out[n-1].To = ph.To
			continue
		}
		if ph.To != nil && !ph.From.Before(*ph.To) {
			continue // canceled at its start: no phase
		}
		out = append(out, ph)
		h.causes = append(h.causes, groups[i])
	}
	return out
}

// discountsAt returns the discounts in force at t, by key.
func (h *history) discountsAt(t time.Time) []abacus.Discount {
	var out []abacus.Discount
	for _, pts := range h.discounts {
		d, _ := valueAt(pts, t)
		if d != nil && (d.Until == nil || d.Until.After(t)) {
			out = append(out, *d)
		}
	}
	slices.SortFunc(out, func(a, b abacus.Discount) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func sameTerms(a, b *abacus.Phase) bool {
	return a.Plan == b.Plan && a.Trial == b.Trial && reflect.DeepEqual(a.Discounts, b.Discounts)
}

// charges turns phases into one record per plan item and stretch of
// constant terms: an item whose terms do not change at a phase boundary
// (say, a discount limited to another item) keeps its record.
func (h *history) charges(phases []abacus.Phase) []*abacus.Charge {
	var out []*abacus.Charge
	open := map[string]*abacus.Charge{} // item -> its record in the previous phase
	for i, ph := range phases {
		p := h.planOf[ph.Plan]
		next := map[string]*abacus.Charge{}
		for _, item := range p.Charges {
			c := &abacus.Charge{
				SubscriptionID: h.sub.ID, CustomerID: h.sub.CustomerID, Item: item.Key, Name: item.Name,
				Plan: ph.Plan, Type: item.Type, Currency: h.sub.Currency, Amount: item.Amount, Timing: item.Timing,
				Meter: item.Meter, Price: item.Price, Discounts: discountsFor(ph.Discounts, item.Key),
				Trial: ph.Trial, StartsAt: ph.From, EndsAt: ph.To, EventID: causeOf(h.causes[i], item.Key),
			}
			if prev := open[item.Key]; prev != nil && sameCharge(prev, c) && prev.EndsAt != nil && prev.EndsAt.Equal(c.StartsAt) {
				prev.EndsAt = c.EndsAt
				next[item.Key] = prev
				continue
			}
			out = append(out, c)
			next[item.Key] = c
		}
		open = next
	}
	for _, c := range out {
		c.ID = chargeID(c)
	}
	return out
}

// causeOf names the newest event among the cuts at a phase's start that
// could change item (every record starts at a cut that changed its item:
// otherwise it would have continued the previous record).
func causeOf(cuts []cut, item string) string {
	for _, c := range cuts {
		if len(c.items) == 0 || slices.Contains(c.items, item) {
			return c.eventID
		}
	}
	return cuts[0].eventID
}

func discountsFor(ds []abacus.Discount, item string) []abacus.Discount {
	var out []abacus.Discount
	for _, d := range ds {
		if len(d.Items) == 0 || slices.Contains(d.Items, item) {
			out = append(out, d)
		}
	}
	return out
}

func sameCharge(a, b *abacus.Charge) bool {
	return a.Plan == b.Plan && a.Trial == b.Trial && reflect.DeepEqual(a.Discounts, b.Discounts)
}

// chargeID derives a record's id from everything it says, so that the same
// history yields the same ids on every replay and a record whose terms or
// bounds change gets a new id (the old one is superseded, not edited).
func chargeID(c *abacus.Charge) string {
	x := *c
	x.ID, x.RecordedAt, x.SupersededAt = "", time.Time{}, nil
	b, _ := json.Marshal(&x)
	sum := sha256.Sum256(b)
	return "chg_" + hex.EncodeToString(sum[:12])
}

// Diff returns the records of current to supersede and the ones of derived
// to insert so that the stored set becomes derived.
func Diff(current, derived []*abacus.Charge) (supersede []string, insert []*abacus.Charge) {
	want := map[string]bool{}
	for _, c := range derived {
		want[c.ID] = true
	}
	have := map[string]bool{}
	for _, c := range current {
		have[c.ID] = true
		if !want[c.ID] {
			supersede = append(supersede, c.ID)
		}
	}
	for _, c := range derived {
		if !have[c.ID] {
			insert = append(insert, c)
		}
	}
	slices.Sort(supersede)
	return supersede, insert
}

// ValidateDiscount checks a discount applied at effective: its own fields,
// and an until after effective.
func ValidateDiscount(d *abacus.Discount, effective time.Time) error {
	return discountProblems(d, effective).Err()
}

func discountProblems(d *abacus.Discount, effective time.Time) *abacus.Problems {
	var pr abacus.Problems
	if !keyPattern.MatchString(d.Key) {
		pr.Add("discount.key", "must be 1-128 characters of letters, digits, '_', '.', ':' or '-'")
	}
	switch {
	case (d.Percent == "") == (d.Amount == ""):
		pr.Add("discount", "exactly one of percent and amount")
	case d.Percent != "":
		v, err := ParseAmount(d.Percent)
		if err != nil {
			pr.Add("discount.percent", "%v", err)
		} else if v.IsZero() || v.Cmp(hundred) > 0 {
			pr.Add("discount.percent", "must be more than 0 and at most 100, got %s", d.Percent)
		} else {
			d.Percent = v.Text('f')
		}
	default:
		v, err := ParseAmount(d.Amount)
		if err != nil {
			pr.Add("discount.amount", "%v", err)
		} else if v.IsZero() {
			pr.Add("discount.amount", "must be more than 0")
		} else {
			d.Amount = v.Text('f')
		}
	}
	for i, it := range d.Items {
		if !keyPattern.MatchString(it) {
			pr.Add(fmt.Sprintf("discount.items[%d]", i), "must name a plan charge key")
		}
	}
	if d.Until != nil {
		u := d.Until.UTC()
		d.Until = &u
		if r := TimeProblem(u); r != "" {
			pr.Add("discount.until", "%s", r)
		} else if !u.After(effective) {
			pr.Add("discount.until", "%s is not after the effective time %s", stamp(u), stamp(effective))
		}
	}
	return &pr
}

// The times Abacus takes for subscriptions: the stores keep Unix
// nanoseconds, which end in 2262, and a trial or period may extend a time
// by up to two years.
var (
	MinTime = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// TimeProblem says what is wrong with a subscription time, or "".
func TimeProblem(t time.Time) string {
	if t.Before(MinTime) || !t.Before(MaxTime) {
		return fmt.Sprintf("%s is out of range: subscription times are from %s until %s", stamp(t), MinTime.Format("2006-01-02"), MaxTime.Format("2006-01-02"))
	}
	return ""
}

var hundred = func() *apd.Decimal { d, _, _ := apd.NewFromString("100"); return d }()

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
