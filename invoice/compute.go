package invoice

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/billing"
	"github.com/abacus-billing/abacus/rating"
	"github.com/abacus-billing/abacus/subscription"
	"github.com/abacus-billing/abacus/usage"
	"github.com/cockroachdb/apd/v3"
)

// InvoiceID is the id of the invoice a subscription issues at a boundary:
// derived, so that two schedulers name the same invoice the same way.
func InvoiceID(tenantID, subscriptionID string, boundary int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%d", tenantID, subscriptionID, boundary)))
	return "in_" + hex.EncodeToString(h[:10])
}

// Boundary returns boundary i of a subscription: its start for i = 0, else
// the i-th boundary of its schedule after the start.
func Boundary(sub *abacus.Subscription, sch billing.Schedule, i int) time.Time {
	if i <= 0 {
		return sub.StartAt.UTC()
	}
	first := sch.PeriodAt(sub.StartAt)
	return sch.Boundary(first.Index + i).UTC()
}

// BoundaryAfter returns the index of the first boundary strictly after t.
func BoundaryAfter(sub *abacus.Subscription, sch billing.Schedule, t time.Time) int {
	if t.Before(sub.StartAt) {
		return 0
	}
	first := sch.PeriodAt(sub.StartAt)
	return sch.PeriodAt(t).Index - first.Index + 1
}

// computation is the data one invoice is computed from.
type computation struct {
	e       *Engine
	tenant  *abacus.Tenant
	sub     *abacus.Subscription
	cust    *abacus.Customer
	sch     billing.Schedule
	cur     rating.Currency
	knownAt *time.Time // nil: live (current aggregates)
	charges []*abacus.Charge
	plans   map[abacus.PlanRef]*abacus.Plan
	prices  map[string]*rating.Price // by charge id
	// project, when set, scales usage quantities (forecast).
	project *projection
}

type projection struct {
	at time.Time // the instant usage so far is measured at
}

// entry is one line of a period's statement before rendering.
type entry struct {
	Line
	amount apd.Decimal
	part   part
}

type part int

const (
	advance part = iota // billed at the period's start
	arrears             // billed at the period's end
)

// run is a maximal stretch of one item on one plan version: adjacent
// charge records that differ only in their discounts.
type run struct {
	item     string
	plan     abacus.PlanRef
	first    *abacus.Charge
	from, to time.Time // to is the zero time for open-ended
	records  []*abacus.Charge
}

func (r *run) end() time.Time {
	if r.to.IsZero() {
		return subscription.MaxTime
	}
	return r.to
}

// runs groups the non-trial charges into runs.
func runs(charges []*abacus.Charge) []*run {
	cs := slices.Clone(charges)
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.Item != b.Item {
			return a.Item < b.Item
		}
		return a.StartsAt.Before(b.StartsAt)
	})
	var out []*run
	for _, c := range cs {
		if c.Trial {
			continue
		}
		if n := len(out); n > 0 {
			r := out[n-1]
			if r.item == c.Item && r.plan == c.Plan && !r.to.IsZero() && r.to.Equal(c.StartsAt) {
				r.records = append(r.records, c)
				r.to = time.Time{}
				if c.EndsAt != nil {
					r.to = c.EndsAt.UTC()
				}
				continue
			}
		}
		r := &run{item: c.Item, plan: c.Plan, first: c, from: c.StartsAt.UTC(), records: []*abacus.Charge{c}}
		if c.EndsAt != nil {
			r.to = c.EndsAt.UTC()
		}
		out = append(out, r)
	}
	return out
}

func maxT(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minT(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func ceilMinute(t time.Time) time.Time {
	if tr := t.Truncate(time.Minute); !tr.Equal(t) {
		return tr.Add(time.Minute)
	}
	return t
}

func planLabel(p abacus.PlanRef) string { return fmt.Sprintf("%s v%d", p.Key, p.Version) }

func tptr(t time.Time) *time.Time { t = t.UTC(); return &t }

// statement returns the lines a period [ps, pe) owes as known by the
// computation: its fees, usage, discounts and commitment true-up. With
// withUsage false, usage lines (and what depends on them: invoice-level
// discounts, the commitment) are left out.
func (c *computation) statement(ctx context.Context, ps, pe time.Time, withUsage bool) ([]*entry, error) {
	sched := c.sch.PeriodAt(ps) // the whole schedule period [ps, pe) lies in
	whole := rating.Interval{Start: sched.Start, End: sched.End}
	period := Period{Start: ps.UTC(), End: pe.UTC()}
	var out []*entry
	planDays := map[abacus.PlanRef][]rating.Interval{}
	for _, r := range runs(c.charges) {
		from, to := maxT(ps, r.from), minT(pe, r.end())
		if !from.Before(to) {
			continue
		}
		from, to = from.UTC(), to.UTC()
		planDays[r.plan] = append(planDays[r.plan], rating.Interval{Start: from, End: to})
		ch := r.first
		frac, err := rating.ProrationFraction(whole, rating.Interval{Start: from, End: to}, c.sch.Loc)
		if err != nil {
			return nil, fmt.Errorf("charge %s: %w", ch.ID, err)
		}
		partial := !(from.Equal(sched.Start.UTC()) && to.Equal(sched.End.UTC()))
		var e *entry
		switch ch.Type {
		case abacus.ChargeRecurring:
			full, err := subscription.ParseAmount(ch.Amount)
			if err != nil {
				return nil, fmt.Errorf("charge %s: amount: %w", ch.ID, err)
			}
			e = &entry{part: arrears}
			if ch.Timing != abacus.InArrears {
				e.part = advance
			}
			if partial {
				v, _, err := rating.Prorate(&full, c.cur, whole, rating.Interval{Start: from, End: to}, c.sch.Loc)
				if err != nil {
					return nil, fmt.Errorf("charge %s: %w", ch.ID, err)
				}
				e.amount = v
				e.Proration = frac.String()
			} else {
				e.amount = roundMoney(&full, c.cur)
			}
			unit := roundMoney(&full, c.cur)
			e.Kind, e.UnitAmount = KindFee, unit.Text('f')
			e.Description = fmt.Sprintf("%s (%s)", itemName(ch), planLabel(r.plan))
			if ch.Timing == abacus.InArrears {
				e.Description += ", in arrears"
			}
		case abacus.ChargeUsage:
			if !withUsage {
				continue
			}
			e, err = c.usageEntry(ctx, ch, r, from, to, whole, partial, frac)
			if err != nil {
				return nil, err
			}
		default:
			continue
		}
		e.Key = fmt.Sprintf("%s/%s/%s@%d/%d", e.Kind, r.item, r.plan.Key, r.plan.Version, from.UnixNano())
		e.Period, e.Item, e.Plan = period, r.item, planLabel(r.plan)
		e.From, e.To = tptr(from), tptr(to)
		e.Amount = e.amount.Text('f')
		out = append(out, e)
		ds, err := c.itemDiscounts(e, r, from, to, whole)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	if !withUsage {
		return out, nil
	}
	// Commitment true-up, then invoice-level amount discounts, over what
	// the period's items (with their own discounts) add up to.
	var sum apd.Decimal
	for _, e := range out {
		add(&sum, &e.amount)
	}
	commit, err := c.commitment(planDays, whole)
	if err != nil {
		return nil, err
	}
	if commit.Cmp(&sum) > 0 {
		e := &entry{part: arrears}
		e.Kind, e.Key, e.Period = KindCommitment, "commitment", period
		sub(&e.amount, &commit, &sum)
		e.amount = roundMoney(&e.amount, c.cur)
		came := roundMoney(&sum, c.cur)
		e.Description = fmt.Sprintf("Minimum commitment of %s for the period (usage and fees came to %s)", commit.Text('f'), came.Text('f'))
		e.Amount = e.amount.Text('f')
		out = append(out, e)
		sum.Set(&commit)
	}
	out = append(out, c.invoiceDiscounts(period, whole, &sum)...)
	return out, nil
}

func itemName(ch *abacus.Charge) string {
	if ch.Name != "" {
		return ch.Name
	}
	return ch.Item
}

// usageEntry rates a usage charge's usage over [from, to).
func (c *computation) usageEntry(ctx context.Context, ch *abacus.Charge, r *run, from, to time.Time, whole rating.Interval, partial bool, frac rating.Fraction) (*entry, error) {
	e := &entry{part: arrears}
	e.Kind, e.Meter = KindUsage, ch.Meter
	e.Description = fmt.Sprintf("%s (%s), usage of %s", itemName(ch), planLabel(r.plan), ch.Meter)
	price, ok := c.prices[ch.ID]
	if !ok {
		p, err := rating.ParsePrice(ch.Price)
		if err != nil {
			return nil, fmt.Errorf("charge %s: price: %w", ch.ID, err)
		}
		c.prices[ch.ID], price = p, p
	}
	qty, events, err := c.quantity(ctx, ch.Meter, from, to)
	if err != nil {
		return nil, err
	}
	if qty.Negative && !qty.IsZero() {
		return nil, abacus.Errorf(abacus.EINVALID, "usage of meter %s from %s to %s is negative (%s); a price rates only non-negative quantities",
			ch.Meter, from.Format(time.RFC3339), to.Format(time.RFC3339), qty.Text('f'))
	}
	u := rating.Usage{Events: events, AmountCurrency: c.cur.Code}
	u.Quantity.Set(&qty)
	u.Amount.Set(&qty)
	if partial {
		f := frac
		u.Proration = &f
		e.Proration = frac.String()
	}
	var res rating.Result
	if err := price.Rate(&u, &res); err != nil {
		return nil, fmt.Errorf("charge %s: rating %s of %s: %w", ch.ID, qty.Text('f'), ch.Meter, err)
	}
	e.amount.Set(&res.Total)
	e.Quantity = decText(&qty)
	e.Events = &events
	for i := range res.Steps {
		s := &res.Steps[i]
		st := Step{Kind: string(s.Kind)}
		if s.Kind == rating.StepTier {
			t := s.Tier + 1
			st.Tier = &t
			from := s.From()
			st.From = decText(&from)
			if !s.Open {
				up := s.UpTo()
				st.UpTo = decText(&up)
			}
		}
		q, up, fp, a := s.Quantity(), s.UnitPrice(), s.FlatPrice(), s.Amount()
		st.Quantity, st.UnitPrice, st.Amount = decText(&q), decText(&up), decText(&a)
		if !fp.IsZero() {
			st.FlatPrice = decText(&fp)
		}
		e.Breakdown = append(e.Breakdown, st)
	}
	for i := range res.Lines {
		l := &res.Lines[i]
		if l.Kind == rating.LineCharge {
			continue
		}
		st := Step{Kind: string(l.Kind), Amount: l.Amount.Text('f')}
		if l.Description != "" {
			st.Kind += ": " + l.Description
		}
		e.Breakdown = append(e.Breakdown, st)
	}
	return e, nil
}

// quantity returns a meter's quantity and event count for the customer
// over [from, to): usage is attributed to periods by minute (a minute
// belongs to the period its first instant is in).
func (c *computation) quantity(ctx context.Context, meter string, from, to time.Time) (apd.Decimal, int64, error) {
	var q apd.Decimal
	qf, qt := ceilMinute(from), ceilMinute(to)
	if !qf.Before(qt) {
		return q, 0, nil
	}
	res, err := usage.Run(ctx, c.e.Store, usage.Query{TenantID: c.tenant.ID, Meter: meter, Customer: c.sub.CustomerID,
		From: qf, To: qt, Window: usage.WindowNone, TimeZone: "UTC", AsOf: c.knownAt, Clock: c.e.Clock})
	if err != nil {
		return q, 0, fmt.Errorf("usage of %s: %w", meter, err)
	}
	var events int64
	for _, row := range res.Rows {
		events += row.Count
		if row.Value == nil {
			continue
		}
		var v apd.Decimal
		if _, _, err := v.SetString(*row.Value); err != nil {
			return q, 0, fmt.Errorf("usage of %s: %w", meter, err)
		}
		add(&q, &v)
	}
	if p := c.project; p != nil && !p.at.Before(qf) && p.at.Before(qt) {
		m, _ := c.e.meter(ctx, c.tenant.ID, meter)
		if m != nil && (m.Aggregation == abacus.AggSum || m.Aggregation == abacus.AggCount) {
			elapsed := p.at.Sub(qf)
			if elapsed < time.Minute {
				elapsed = time.Minute
			}
			total := qt.Sub(qf)
			var num, den apd.Decimal
			num.SetInt64(int64(total / time.Second))
			den.SetInt64(int64(elapsed / time.Second))
			mul(&q, &q, &num)
			quo(&q, &q, &den)
			q = roundScale(&q, 6)
			events = events * int64(total/time.Second) / max(1, int64(elapsed/time.Second))
		}
	}
	return q, events, nil
}

// discountCovers gathers, per discount key in first-seen order, the
// intervals in which the discount is in force.
type discountCovers struct {
	byKey map[string]*discountCover
	keys  []string
}

type discountCover struct {
	d   abacus.Discount
	ivs []rating.Interval
}

// add records d as in force over [from, to), cut at its Until; an empty
// span adds nothing.
func (cs *discountCovers) add(d abacus.Discount, from, to time.Time) {
	if d.Until != nil {
		to = minT(to, *d.Until)
	}
	if !from.Before(to) {
		return
	}
	if cs.byKey == nil {
		cs.byKey = map[string]*discountCover{}
	}
	cv := cs.byKey[d.Key]
	if cv == nil {
		cv = &discountCover{d: d}
		cs.byKey[d.Key] = cv
		cs.keys = append(cs.keys, d.Key)
	}
	cv.ivs = append(cv.ivs, rating.Interval{Start: from.UTC(), End: to.UTC()})
}

// itemDiscounts returns the discount lines of one fee or usage entry: each
// discount of the run's records that covers the item, for the days of
// [from, to) it is in force. Percent discounts take that share of the
// line; amount discounts take their amount per whole period, prorated by
// days, never more than the line.
func (c *computation) itemDiscounts(e *entry, r *run, from, to time.Time, whole rating.Interval) ([]*entry, error) {
	var covers discountCovers
	for _, rec := range r.records {
		rf, rt := maxT(from, rec.StartsAt), to
		if rec.EndsAt != nil {
			rt = minT(to, *rec.EndsAt)
		}
		for _, d := range rec.Discounts {
			if len(d.Items) > 0 && !slices.Contains(d.Items, r.item) {
				continue
			}
			if len(d.Items) == 0 && d.Amount != "" {
				continue // invoice-level
			}
			covers.add(d, rf, rt)
		}
	}
	var out []*entry
	remaining := e.amount
	for _, k := range covers.keys {
		cv := covers.byKey[k]
		days, err := c.days(whole, cv.ivs)
		if err != nil {
			return nil, err
		}
		lineDays, err := c.days(whole, []rating.Interval{{Start: from, End: to}})
		if err != nil {
			return nil, err
		}
		var v apd.Decimal
		if cv.d.Percent != "" {
			if lineDays.Num == 0 {
				continue
			}
			pct, _ := subscription.ParseAmount(cv.d.Percent)
			v.Set(&e.amount)
			mul(&v, &v, &pct)
			var n, d apd.Decimal
			n.SetInt64(days.Num)
			d.SetInt64(lineDays.Num * 100)
			mul(&v, &v, &n)
			quo(&v, &v, &d)
		} else {
			amt, _ := subscription.ParseAmount(cv.d.Amount)
			var n, d apd.Decimal
			n.SetInt64(days.Num)
			d.SetInt64(days.Den)
			mul(&v, &amt, &n)
			quo(&v, &v, &d)
		}
		v = roundMoney(&v, c.cur)
		if v.Cmp(&remaining) > 0 {
			v.Set(&remaining)
		}
		sub(&remaining, &remaining, &v)
		de := &entry{part: e.part}
		de.amount.Neg(&v)
		de.Kind = KindDiscount
		de.Key = fmt.Sprintf("%s/%s", e.Key, k)
		de.Period, de.Item, de.Plan = e.Period, e.Item, e.Plan
		de.Description = discountLabel(cv.d) + " on " + e.Description
		if days.Num != lineDays.Num {
			de.Proration = fmt.Sprintf("%d/%d", days.Num, lineDays.Num)
		}
		de.Amount = de.amount.Text('f')
		out = append(out, de)
	}
	return out, nil
}

func discountLabel(d abacus.Discount) string {
	s := d.Key
	if d.Description != "" {
		s = d.Description
	}
	if d.Percent != "" {
		return fmt.Sprintf("Discount %s (%s%%)", s, d.Percent)
	}
	return fmt.Sprintf("Discount %s (%s per period)", s, d.Amount)
}

// days returns the calendar days of the union of ivs over the days of the
// schedule period whole.
func (c *computation) days(whole rating.Interval, ivs []rating.Interval) (rating.Fraction, error) {
	slices.SortFunc(ivs, func(a, b rating.Interval) int { return a.Start.Compare(b.Start) })
	var f rating.Fraction
	var cur *rating.Interval
	flush := func() error {
		if cur == nil {
			return nil
		}
		p, err := rating.ProrationFraction(whole, *cur, c.sch.Loc)
		f.Num += p.Num
		f.Den = p.Den
		return err
	}
	for i := range ivs {
		iv := ivs[i]
		if cur != nil && !iv.Start.After(cur.End) {
			cur.End = maxT(cur.End, iv.End)
			continue
		}
		if err := flush(); err != nil {
			return f, err
		}
		cur = &iv
	}
	if err := flush(); err != nil {
		return f, err
	}
	if f.Den == 0 {
		p, err := rating.ProrationFraction(whole, rating.Interval{Start: whole.Start, End: whole.Start}, c.sch.Loc)
		return p, err
	}
	return f, nil
}

// commitment returns the period's minimum commitment: each plan's
// minimum_commitment prorated by the days it was in force.
func (c *computation) commitment(planDays map[abacus.PlanRef][]rating.Interval, whole rating.Interval) (apd.Decimal, error) {
	var total apd.Decimal
	refs := make([]abacus.PlanRef, 0, len(planDays))
	for ref := range planDays {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, func(a, b abacus.PlanRef) int {
		if a.Key != b.Key {
			return strings.Compare(a.Key, b.Key)
		}
		return a.Version - b.Version
	})
	for _, ref := range refs {
		p := c.plans[ref]
		if p == nil || p.MinimumCommitment == "" {
			continue
		}
		amt, err := subscription.ParseAmount(p.MinimumCommitment)
		if err != nil {
			return total, err
		}
		f, err := c.days(whole, planDays[ref])
		if err != nil {
			return total, err
		}
		var v, n, d apd.Decimal
		n.SetInt64(f.Num)
		d.SetInt64(f.Den)
		mul(&v, &amt, &n)
		quo(&v, &v, &d)
		v = roundMoney(&v, c.cur)
		add(&total, &v)
	}
	return total, nil
}

// invoiceDiscounts returns the amount discounts without items: their
// amount per period, prorated by the days they are in force, never more
// than what the period comes to.
func (c *computation) invoiceDiscounts(period Period, whole rating.Interval, sum *apd.Decimal) []*entry {
	var covers discountCovers
	for _, rec := range c.charges {
		if rec.Trial {
			continue
		}
		from, to := maxT(period.Start, rec.StartsAt), period.End
		if rec.EndsAt != nil {
			to = minT(to, *rec.EndsAt)
		}
		for _, d := range rec.Discounts {
			if len(d.Items) > 0 || d.Amount == "" {
				continue
			}
			covers.add(d, from, to)
		}
	}
	slices.Sort(covers.keys)
	var out []*entry
	remaining := *sum
	for _, k := range covers.keys {
		cv := covers.byKey[k]
		f, err := c.days(whole, cv.ivs)
		if err != nil || f.Num == 0 {
			continue
		}
		amt, _ := subscription.ParseAmount(cv.d.Amount)
		var v, n, d apd.Decimal
		n.SetInt64(f.Num)
		d.SetInt64(f.Den)
		mul(&v, &amt, &n)
		quo(&v, &v, &d)
		v = roundMoney(&v, c.cur)
		if v.Cmp(&remaining) > 0 {
			v.Set(&remaining)
		}
		if v.Sign() <= 0 {
			continue
		}
		sub(&remaining, &remaining, &v)
		e := &entry{part: arrears}
		e.amount.Neg(&v)
		e.Kind, e.Key, e.Period = KindDiscount, "discount/"+k, period
		e.Description = discountLabel(cv.d)
		if f.Num != f.Den {
			e.Proration = f.String()
		}
		e.Amount = e.amount.Text('f')
		out = append(out, e)
	}
	return out
}

// billedKey identifies what a line bills across invoices.
type billedKey struct {
	period int64 // period start, Unix ns
	key    string
}

type billedLine struct {
	amount apd.Decimal
	first  Line // the first line billed for the key (for adjustment texts)
}

// billed sums the lines of the given invoices' documents by (period, key).
func billed(invs []*abacus.Invoice) (map[billedKey]*billedLine, error) {
	out := map[billedKey]*billedLine{}
	for _, inv := range invs {
		var doc Document
		if err := json.Unmarshal(inv.Document, &doc); err != nil {
			return nil, fmt.Errorf("invoice %s: document: %w", inv.ID, err)
		}
		for _, l := range doc.Lines {
			var v apd.Decimal
			if _, _, err := v.SetString(l.Amount); err != nil {
				return nil, fmt.Errorf("invoice %s: line %s: amount %q", inv.ID, l.Key, l.Amount)
			}
			k := billedKey{l.Period.Start.UnixNano(), l.Key}
			b := out[k]
			if b == nil {
				b = &billedLine{first: l}
				out[k] = b
			}
			add(&b.amount, &v)
		}
	}
	return out, nil
}

func sortKeys(ks []billedKey) {
	slices.SortFunc(ks, func(a, b billedKey) int {
		if a.period != b.period {
			if a.period < b.period {
				return -1
			}
			return 1
		}
		return strings.Compare(a.key, b.key)
	})
}
