package invoice

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/rating"
	"github.com/abacus-billing/abacus/subscription"
	"github.com/cockroachdb/apd/v3"
)

// Engine computes invoices. It is deterministic: the same stored history
// and the same knowledge instant give the same document, byte for byte.
type Engine struct {
	Store abacus.Store
	Clock abacus.Clock // knowledge time (barriers taken by as-of usage reads)

	mu     sync.Mutex
	meters map[[2]string]*abacus.Meter // meters are immutable but for their name
}

func (e *Engine) meter(ctx context.Context, tenantID, key string) (*abacus.Meter, error) {
	e.mu.Lock()
	m, ok := e.meters[[2]string{tenantID, key}]
	e.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := e.Store.FindMeter(ctx, tenantID, key)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if e.meters == nil {
		e.meters = map[[2]string]*abacus.Meter{}
	}
	e.meters[[2]string{tenantID, key}] = m
	e.mu.Unlock()
	return m, nil
}

// usageHorizon is how far before the previous boundary an invoice looks
// for late usage of earlier periods, beyond the tenant's backdating window
// and grace: events are refused at ingest when older than the backdating
// window, so earlier periods cannot have changed since they were billed.
const usageHorizon = 24 * time.Hour

// Compute returns the document of inv as known at knownAt (nil: live,
// from the current aggregates). It does not look at inv's status: a
// finalized invoice recomputed at its FinalizedAt is its frozen document.
func (e *Engine) Compute(ctx context.Context, inv *abacus.Invoice, knownAt *time.Time) (*Document, error) {
	return e.compute(ctx, inv, knownAt, nil)
}

func (e *Engine) load(ctx context.Context, inv *abacus.Invoice, knownAt *time.Time) (*computation, error) {
	tenant, err := e.Store.FindTenant(ctx, inv.TenantID)
	if err != nil {
		return nil, err
	}
	sub, err := e.Store.FindSubscription(ctx, inv.TenantID, inv.SubscriptionID)
	if err != nil {
		return nil, err
	}
	sch, err := subscription.Schedule(sub)
	if err != nil {
		return nil, err
	}
	cur, err := rating.LookupCurrency(sub.Currency)
	if err != nil {
		return nil, err
	}
	c := &computation{e: e, tenant: tenant, sub: sub, sch: sch, cur: cur, knownAt: knownAt,
		plans: map[abacus.PlanRef]*abacus.Plan{}, prices: map[string]*rating.Price{}}
	if cust, err := e.Store.FindCustomer(ctx, inv.TenantID, sub.CustomerID); err == nil {
		c.cust = cust
	} else if abacus.ErrorCode(err) != abacus.ENOTFOUND {
		return nil, err
	}
	c.charges, err = e.Store.ListCharges(ctx, abacus.ChargeFilter{TenantID: inv.TenantID, SubscriptionID: sub.ID, AsOf: knownAt})
	if err != nil {
		return nil, err
	}
	for _, ch := range c.charges {
		if _, ok := c.plans[ch.Plan]; ok {
			continue
		}
		p, err := e.Store.FindPlan(ctx, inv.TenantID, ch.Plan.Key, ch.Plan.Version)
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", planLabel(ch.Plan), err)
		}
		c.plans[ch.Plan] = p
	}
	return c, nil
}

// priorInvoices returns the invoices of the subscription that count as
// billed for inv as known at knownAt: finalized before it (at an earlier
// knowledge instant) and not void by then. Live: every finalized one.
func (e *Engine) priorInvoices(ctx context.Context, inv *abacus.Invoice, knownAt *time.Time) ([]*abacus.Invoice, error) {
	all, err := e.Store.SubscriptionInvoices(ctx, inv.TenantID, inv.SubscriptionID)
	if err != nil {
		return nil, err
	}
	var out []*abacus.Invoice
	for _, p := range all {
		if p.ID == inv.ID || p.FinalizedAt == nil || p.Status == abacus.InvoiceDraft {
			continue
		}
		if knownAt == nil {
			if p.Status == abacus.InvoiceFinalized {
				out = append(out, p)
			}
			continue
		}
		if !p.FinalizedAt.Before(*knownAt) {
			continue
		}
		if p.VoidedAt != nil && !p.VoidedAt.After(*knownAt) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

func (e *Engine) compute(ctx context.Context, inv *abacus.Invoice, knownAt *time.Time, proj *projection) (*Document, error) {
	c, err := e.load(ctx, inv, knownAt)
	if err != nil {
		return nil, err
	}
	c.project = proj
	prior, err := e.priorInvoices(ctx, inv, knownAt)
	if err != nil {
		return nil, err
	}
	done, err := billed(prior)
	if err != nil {
		return nil, err
	}
	i := inv.Boundary
	issue := Boundary(c.sub, c.sch, i)
	doc := &Document{ID: inv.ID, Customer: c.sub.CustomerID, Subscription: c.sub.ID, Currency: c.cur.Code,
		TimeZone: c.sub.TimeZone, Boundary: i, PeriodStart: Boundary(c.sub, c.sch, i-1), IssueAt: issue,
		DueAt: inv.DueAt.UTC(), TestClock: inv.TestClockID, KnownAt: knownAt, Lines: []Line{}}
	if c.cust != nil {
		doc.CustomerName = c.cust.Name
	}
	if knownAt != nil {
		doc.KnownAt = tptr(*knownAt)
	}
	horizon := doc.PeriodStart.Add(-c.tenant.Settings.Backdate() - c.tenant.Settings.Grace() - usageHorizon)
	var total apd.Decimal
	for j := 0; j <= i; j++ {
		ps, pe := Boundary(c.sub, c.sch, j), Boundary(c.sub, c.sch, j+1)
		withUsage := j == i-1 || (j < i-1 && pe.After(horizon))
		if j == i {
			withUsage = false
		}
		entries, err := c.statement(ctx, ps, pe, withUsage)
		if err != nil {
			return nil, err
		}
		if j == i {
			kept := entries[:0]
			for _, en := range entries {
				if en.part == advance {
					kept = append(kept, en)
				}
			}
			entries = kept
			if len(entries) > 0 {
				doc.NextPeriod = &Period{Start: ps, End: pe}
			}
		}
		lines, err := c.diff(ps, entries, done, j, i, withUsage)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			var v apd.Decimal
			_, _, _ = v.SetString(l.Amount)
			add(&total, &v)
		}
		doc.Lines = append(doc.Lines, lines...)
	}
	total = roundMoney(&total, c.cur)
	doc.Total = total.Text('f')
	return doc, nil
}

// diff turns a period's statement into invoice lines: what was never billed
// is billed as is; what changed since it was billed becomes an adjustment
// of the difference ("rated now − billed"); what was billed and is no
// longer owed is reversed. Keys that this statement did not compute (usage
// of periods outside the horizon, arrears of the period billed in advance)
// are left alone.
func (c *computation) diff(ps time.Time, entries []*entry, done map[billedKey]*billedLine, j, i int, withUsage bool) ([]Line, error) {
	var out []Line
	seen := map[string]bool{}
	for _, en := range entries {
		seen[en.Key] = true
		b := done[billedKey{ps.UTC().UnixNano(), en.Key}]
		if b == nil {
			if en.amount.IsZero() && j < i-1 {
				continue // nothing new to say about an old period
			}
			out = append(out, en.Line)
			continue
		}
		if en.amount.Cmp(&b.amount) == 0 {
			continue
		}
		out = append(out, c.adjustment(en.Line, &en.amount, b))
	}
	if j == i {
		return out, nil
	}
	var gone []billedKey
	for k := range done {
		if k.period != ps.UTC().UnixNano() || seen[k.key] {
			continue
		}
		if !withUsage && !isFeeKey(k.key) {
			continue
		}
		gone = append(gone, k)
	}
	sortKeys(gone)
	for _, k := range gone {
		b := done[k]
		if b.amount.IsZero() {
			continue
		}
		var zero apd.Decimal
		zero = roundMoney(&zero, c.cur)
		out = append(out, c.adjustment(b.first, &zero, b))
	}
	return out, nil
}

// isFeeKey reports whether a statement key is a fee or a fee's discount:
// computed for every period, whether or not usage is.
func isFeeKey(k string) bool {
	return len(k) > 4 && k[:4] == KindFee+"/"
}

func (c *computation) adjustment(now Line, rated *apd.Decimal, b *billedLine) Line {
	var delta apd.Decimal
	sub(&delta, rated, &b.amount)
	delta = roundMoney(&delta, c.cur)
	l := now
	l.Adjusts = now.Kind
	if now.Kind == KindAdjustment { // a reversal of a key first billed as an adjustment
		l.Adjusts = now.Adjusts
	}
	l.Kind = KindAdjustment
	l.Rated, l.Billed, l.Amount = rated.Text('f'), b.amount.Text('f'), delta.Text('f')
	l.Breakdown = nil
	what := "Adjustment"
	if l.Adjusts == KindUsage {
		what = "Late usage adjustment"
	}
	l.Description = fmt.Sprintf("%s for %s – %s: %s (rated now %s, billed %s)", what,
		c.localDate(now.Period.Start), c.localDate(now.Period.End), now.Description, l.Rated, l.Billed)
	return l
}

func (c *computation) localDate(t time.Time) string { return t.In(c.sch.Loc).Format("2006-01-02") }
