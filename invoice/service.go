package invoice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/billing"
	"github.com/abacus-billing/abacus/rating"
	"github.com/abacus-billing/abacus/subscription"
	"github.com/cockroachdb/apd/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// Service runs the invoice lifecycle: drafts per billing boundary, their
// finalization at due time (the scheduler), previews, forecasts, as_of
// reads, voids, credit notes and test clocks.
type Service struct {
	Store  abacus.Store
	Engine *Engine
	Clock  abacus.Clock // the system clock (knowledge time, customers without a test clock)
	Log    *slog.Logger

	Metrics *Metrics
}

// NewService returns a Service over store.
func NewService(store abacus.Store, clock abacus.Clock, log *slog.Logger) *Service {
	if clock == nil {
		clock = abacus.SystemClock{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Service{Store: store, Engine: &Engine{Store: store, Clock: clock}, Clock: clock, Log: log, Metrics: NewMetrics()}
}

// Metrics of the scheduler.
type Metrics struct {
	Finalized prometheus.Counter
	Errors    prometheus.Counter
}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		Finalized: prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_invoices_finalized_total", Help: "Invoices finalized by this process."}),
		Errors:    prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_invoice_scheduler_errors_total", Help: "Subscriptions the invoice scheduler failed to process (retried next tick)."}),
	}
}

// Collectors returns the metrics for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Finalized, m.Errors}
}

// CustomerNow is a customer's time: its test clock's, or the system's.
func (s *Service) CustomerNow(ctx context.Context, tenantID, customerID string) (time.Time, error) {
	c, err := s.Store.FindCustomer(ctx, tenantID, customerID)
	if err != nil {
		if abacus.ErrorCode(err) == abacus.ENOTFOUND {
			return s.Clock.Now().UTC(), nil
		}
		return time.Time{}, err
	}
	if c.TestClock == "" {
		return s.Clock.Now().UTC(), nil
	}
	tc, err := s.Store.FindTestClock(ctx, tenantID, c.TestClock)
	if err != nil {
		return time.Time{}, err
	}
	return tc.Now.UTC(), nil
}

func (s *Service) testClockOf(ctx context.Context, tenantID, customerID string) string {
	if c, err := s.Store.FindCustomer(ctx, tenantID, customerID); err == nil {
		return c.TestClock
	}
	return ""
}

// Run runs the scheduler every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("invoice scheduler", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick brings every subscription's invoices up to date once: drafts for
// every boundary up to the next one, and finalization of those due. It is
// idempotent and safe to run in several processes at once.
func (s *Service) Tick(ctx context.Context) error {
	subs, err := s.Store.ListSubscriptions(ctx, "", "")
	if err != nil {
		return err
	}
	var errs []error
	for _, sub := range subs {
		if err := ctx.Err(); err != nil {
			return err
		}
		now, err := s.CustomerNow(ctx, sub.TenantID, sub.CustomerID)
		if err == nil {
			_, err = s.Sync(ctx, sub, now)
		}
		if err != nil {
			s.Metrics.Errors.Inc()
			errs = append(errs, fmt.Errorf("subscription %s/%s: %w", sub.TenantID, sub.ID, err))
		}
	}
	return errors.Join(errs...)
}

// Sync brings one subscription's invoices up to date at now (the
// customer's time) and returns the invoices it finalized.
func (s *Service) Sync(ctx context.Context, sub *abacus.Subscription, now time.Time) ([]*abacus.Invoice, error) {
	tenant, err := s.Store.FindTenant(ctx, sub.TenantID)
	if err != nil {
		return nil, err
	}
	sch, err := subscription.Schedule(sub)
	if err != nil {
		return nil, err
	}
	grace := tenant.Settings.Grace()
	clock := s.testClockOf(ctx, sub.TenantID, sub.CustomerID)
	existing, err := s.Store.SubscriptionInvoices(ctx, sub.TenantID, sub.ID)
	if err != nil {
		return nil, err
	}
	have := map[int]*abacus.Invoice{}
	for _, inv := range existing {
		have[inv.Boundary] = inv
	}
	// The last boundary with something to bill for sure: the first at or
	// after the end. Later ones are issued only to carry adjustments.
	last := -1
	if sub.EndsAt != nil {
		last = BoundaryAfter(sub, sch, sub.EndsAt.Add(-time.Nanosecond))
		if !sub.EndsAt.After(sub.StartAt) {
			last = 0
		}
	}
	next := BoundaryAfter(sub, sch, now)
	horizon := tenant.Settings.Backdate() + grace + usageHorizon
	var finalized []*abacus.Invoice
	for i := 0; i <= next; i++ {
		b := Boundary(sub, sch, i)
		postEnd := last >= 0 && i > last
		if postEnd && b.After(sub.EndsAt.Add(horizon+grace)) {
			break
		}
		header := draftHeader(sub, sch, i, grace, clock, s.Clock.Now())
		inv := have[i]
		if inv != nil && inv.Status != abacus.InvoiceDraft {
			continue
		}
		due := !now.Before(header.DueAt)
		if inv != nil {
			due = !now.Before(inv.DueAt)
		}
		if postEnd {
			// Only when due, and only if there is something to bill.
			if !due {
				continue
			}
			k, err := s.Store.Barrier(ctx, s.knowledgeNow)
			if err != nil {
				return finalized, err
			}
			doc, err := s.Engine.Compute(ctx, header, &k)
			if err != nil {
				return finalized, err
			}
			if len(doc.Lines) == 0 {
				if inv != nil {
					if err := s.Store.DeleteDraft(ctx, sub.TenantID, inv.ID); err != nil && abacus.ErrorCode(err) != abacus.ECONFLICT {
						return finalized, err
					}
				}
				continue
			}
		}
		if inv == nil {
			if inv, err = s.Store.EnsureInvoice(ctx, header); err != nil {
				return finalized, err
			}
		}
		if !due || inv.Status != abacus.InvoiceDraft {
			continue
		}
		f, err := s.Finalize(ctx, inv)
		if errors.Is(err, errEarlierDraft) {
			break // another process is on an earlier boundary; next tick
		}
		if err != nil {
			return finalized, err
		}
		if f != nil {
			finalized = append(finalized, f)
		}
	}
	return finalized, nil
}

// draftHeader is the record of the draft a subscription issues at boundary
// i: the scheduler stores it, a preview computes it without storing it.
func draftHeader(sub *abacus.Subscription, sch billing.Schedule, i int, grace time.Duration, testClock string, now time.Time) *abacus.Invoice {
	b := Boundary(sub, sch, i)
	return &abacus.Invoice{TenantID: sub.TenantID, ID: InvoiceID(sub.TenantID, sub.ID, i), Status: abacus.InvoiceDraft,
		CustomerID: sub.CustomerID, SubscriptionID: sub.ID, Currency: sub.Currency, Boundary: i,
		PeriodStart: Boundary(sub, sch, i-1), // boundary 0 for i = 0: its arrears period is empty
		IssueAt:     b, DueAt: b.Add(grace), TestClockID: testClock, Series: testClock, CreatedAt: now.UTC()}
}

func (s *Service) knowledgeNow() time.Time { return s.Clock.Now().UTC() }

// errEarlierDraft says an earlier boundary of the subscription is still a
// draft (another scheduler is finalizing it): try again on the next tick.
var errEarlierDraft = errors.New("an earlier boundary is still a draft")

// Finalize finalizes a draft now: a knowledge barrier, the document
// computed as known at it, then one store transaction that numbers and
// freezes it. It returns nil, nil when another process finalized it first.
func (s *Service) Finalize(ctx context.Context, inv *abacus.Invoice) (*abacus.Invoice, error) {
	for attempt := 0; ; attempt++ {
		k, err := s.Store.Barrier(ctx, s.knowledgeNow)
		if err != nil {
			return nil, err
		}
		// An earlier boundary still a draft after the barrier may commit
		// later with a finalized_at before k: this invoice would not see
		// it as billed. Finalize in boundary order only.
		all, err := s.Store.SubscriptionInvoices(ctx, inv.TenantID, inv.SubscriptionID)
		if err != nil {
			return nil, err
		}
		for _, p := range all {
			if p.Boundary < inv.Boundary && p.Status == abacus.InvoiceDraft {
				return nil, fmt.Errorf("invoice %s: boundary %d (%s): %w", inv.ID, p.Boundary, p.ID, errEarlierDraft)
			}
		}
		doc, err := s.Engine.Compute(ctx, inv, &k)
		if err != nil {
			return nil, fmt.Errorf("invoice %s: %w", inv.ID, err)
		}
		out, err := s.Store.FinalizeInvoice(ctx, inv.TenantID, inv.ID, abacus.Finalization{KnownAt: k, Total: doc.Total,
			Render: func(stored *abacus.Invoice) (json.RawMessage, error) {
				doc.Number, doc.FinalizedAt = stored.Number, tptr(*stored.FinalizedAt)
				return json.Marshal(doc)
			}})
		if err == nil {
			s.Metrics.Finalized.Inc()
			s.Log.Info("invoice finalized", "tenant", inv.TenantID, "invoice", inv.ID, "number", out.Number, "total", out.Total)
			return out, nil
		}
		if abacus.ErrorCode(err) != abacus.ECONFLICT {
			return nil, err
		}
		cur, ferr := s.Store.FindInvoice(ctx, inv.TenantID, inv.ID)
		if ferr == nil && cur.Status != abacus.InvoiceDraft {
			return nil, nil // finalized by another scheduler
		}
		if attempt >= 2 || !strings.Contains(abacus.ErrorMessage(err), "stale") {
			return nil, err
		}
	}
}

// View is an invoice as the API shows it: its record and its document
// (frozen, recomputed as of an instant, or live for a draft), and for an
// open draft the forecast.
type View struct {
	*abacus.Invoice
	AsOf        *time.Time           `json:"as_of,omitempty"`
	Document    json.RawMessage      `json:"document"`
	Forecast    *Forecast            `json:"forecast,omitempty"`
	CreditNotes []*abacus.CreditNote `json:"credit_notes,omitempty"`
}

// Get returns an invoice. With asOf, the invoice exactly as Abacus knew it
// then: a finalized invoice whose FinalizedAt is at or before asOf is
// recomputed as known at FinalizedAt (and must equal its frozen document);
// otherwise the draft as known at asOf.
func (s *Service) Get(ctx context.Context, tenantID, id string, asOf *time.Time) (*View, error) {
	inv, err := s.Store.FindInvoice(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	v := &View{Invoice: inv}
	if asOf == nil {
		if inv.Status != abacus.InvoiceDraft {
			v.Document = inv.Document
			v.CreditNotes, err = s.Store.ListCreditNotes(ctx, tenantID, inv.ID)
			if err != nil {
				return nil, err
			}
			return v, nil
		}
		doc, err := s.Engine.Compute(ctx, inv, nil)
		if err != nil {
			return nil, err
		}
		inv.Total = doc.Total
		if v.Document, err = json.Marshal(doc); err != nil {
			return nil, err
		}
		now, err := s.CustomerNow(ctx, tenantID, inv.CustomerID)
		if err != nil {
			return nil, err
		}
		if now.Before(inv.IssueAt) && now.After(inv.PeriodStart) {
			if v.Forecast, err = s.forecast(ctx, inv, now); err != nil {
				return nil, err
			}
		}
		return v, nil
	}
	t := asOf.UTC()
	v.AsOf = &t
	if t.After(s.Clock.Now().Add(-time.Second)) {
		// Make the read stable: everything stamped up to t has committed.
		if _, err := s.Store.Barrier(ctx, s.knowledgeNow); err != nil {
			return nil, err
		}
	}
	if inv.FinalizedAt != nil && !inv.FinalizedAt.After(t) {
		k := inv.FinalizedAt.UTC()
		doc, err := s.Engine.Compute(ctx, inv, &k)
		if err != nil {
			return nil, err
		}
		doc.Number, doc.FinalizedAt = inv.Number, &k
		if v.Document, err = json.Marshal(doc); err != nil {
			return nil, err
		}
		if inv.VoidedAt != nil && inv.VoidedAt.After(t) {
			inv.Status, inv.VoidedAt, inv.VoidReason = abacus.InvoiceFinalized, nil, ""
		}
		return v, nil
	}
	doc, err := s.Engine.Compute(ctx, inv, &t)
	if err != nil {
		return nil, err
	}
	inv.Status, inv.Number, inv.FinalizedAt, inv.VoidedAt, inv.VoidReason, inv.Total = abacus.InvoiceDraft, "", nil, nil, "", doc.Total
	if v.Document, err = json.Marshal(doc); err != nil {
		return nil, err
	}
	return v, nil
}

// forecast projects a draft to its period end.
func (s *Service) forecast(ctx context.Context, inv *abacus.Invoice, now time.Time) (*Forecast, error) {
	doc, err := s.Engine.compute(ctx, inv, nil, &projection{at: now})
	if err != nil {
		return nil, err
	}
	return &Forecast{Method: ForecastMethod, AtTime: now.UTC(), Lines: doc.Lines, Total: doc.Total}, nil
}

// Preview returns, for each subscription of the customer that is not over,
// the invoice of its next boundary as it would be finalized now (computed
// at a knowledge barrier, like a finalization), with its forecast.
func (s *Service) Preview(ctx context.Context, tenantID, customerID string) ([]*View, error) {
	if _, err := s.Store.FindCustomer(ctx, tenantID, customerID); err != nil {
		return nil, err
	}
	subs, err := s.Store.ListSubscriptions(ctx, tenantID, customerID)
	if err != nil {
		return nil, err
	}
	now, err := s.CustomerNow(ctx, tenantID, customerID)
	if err != nil {
		return nil, err
	}
	tenant, err := s.Store.FindTenant(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	k, err := s.Store.Barrier(ctx, s.knowledgeNow)
	if err != nil {
		return nil, err
	}
	clock := s.testClockOf(ctx, tenantID, customerID)
	out := []*View{}
	for _, sub := range subs {
		sch, err := subscription.Schedule(sub)
		if err != nil {
			return nil, err
		}
		if sub.EndsAt != nil && sub.EndsAt.Before(now) {
			continue
		}
		i := BoundaryAfter(sub, sch, now)
		inv := draftHeader(sub, sch, i, tenant.Settings.Grace(), clock, s.Clock.Now())
		doc, err := s.Engine.Compute(ctx, inv, &k)
		if err != nil {
			return nil, err
		}
		inv.Total = doc.Total
		v := &View{Invoice: inv, AsOf: &k}
		if v.Document, err = json.Marshal(doc); err != nil {
			return nil, err
		}
		if now.Before(inv.IssueAt) && now.After(inv.PeriodStart) {
			if v.Forecast, err = s.forecast(ctx, inv, now); err != nil {
				return nil, err
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// Void voids a finalized invoice. Its amounts stop counting as billed: the
// subscription's next invoice bills what is still owed for its periods.
func (s *Service) Void(ctx context.Context, tenantID, id, reason string) (*abacus.Invoice, error) {
	return s.Store.VoidInvoice(ctx, tenantID, id, reason, s.knowledgeNow)
}

// CreditNoteInput is what a credit note request carries.
type CreditNoteInput struct {
	Reason string                  `json:"reason"`
	Lines  []abacus.CreditNoteLine `json:"lines"`
}

// MaxCreditNoteLines bounds one credit note.
const MaxCreditNoteLines = 100

// CreateCreditNote validates and stores a credit note against a finalized
// invoice. Each line's amount must be positive with at most the currency's
// minor-unit digits.
func (s *Service) CreateCreditNote(ctx context.Context, tenantID, invoiceID string, in CreditNoteInput) (*abacus.CreditNote, error) {
	inv, err := s.Store.FindInvoice(ctx, tenantID, invoiceID)
	if err != nil {
		return nil, err
	}
	cur, err := rating.LookupCurrency(inv.Currency)
	if err != nil {
		return nil, err
	}
	var p abacus.Problems
	if strings.TrimSpace(in.Reason) == "" {
		p.Add("reason", "is required")
	} else if len(in.Reason) > 1000 {
		p.Add("reason", "must be at most 1000 bytes")
	}
	if len(in.Lines) == 0 || len(in.Lines) > MaxCreditNoteLines {
		p.Add("lines", "must hold 1 to %d lines, got %d", MaxCreditNoteLines, len(in.Lines))
	}
	var total apd.Decimal
	lines := make([]abacus.CreditNoteLine, 0, len(in.Lines))
	for i, l := range in.Lines {
		path := fmt.Sprintf("lines[%d]", i)
		if strings.TrimSpace(l.Description) == "" || len(l.Description) > 1000 {
			p.Add(path+".description", "is required, at most 1000 bytes")
		}
		v, err := subscription.ParseAmount(l.Amount)
		switch {
		case err != nil:
			p.Add(path+".amount", "%v", err)
			continue
		case v.IsZero():
			p.Add(path+".amount", "must be more than 0")
			continue
		case -v.Exponent > int32(cur.Exponent):
			r := roundMoney(&v, cur)
			if r.Cmp(&v) != 0 {
				p.Add(path+".amount", "has more than the %d decimals of %s: %s", cur.Exponent, cur.Code, l.Amount)
				continue
			}
		}
		v = roundMoney(&v, cur)
		add(&total, &v)
		lines = append(lines, abacus.CreditNoteLine{Description: l.Description, Amount: v.Text('f')})
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	total = roundMoney(&total, cur)
	n := &abacus.CreditNote{TenantID: tenantID, ID: "cn_" + randomID(), InvoiceID: inv.ID, Currency: inv.Currency,
		Reason: in.Reason, Lines: lines, Total: total.Text('f'), CreatedAt: s.Clock.Now().UTC()}
	return s.Store.CreateCreditNote(ctx, n)
}

// AdvanceTestClock moves a test clock to t and runs the scheduler for its
// customers' subscriptions at the new time, as if the time had passed:
// periods close and invoices finalize before it returns.
func (s *Service) AdvanceTestClock(ctx context.Context, tenantID, id string, t time.Time) (*abacus.TestClock, []*abacus.Invoice, error) {
	tc, err := s.Store.AdvanceTestClock(ctx, tenantID, id, t.UTC())
	if err != nil {
		return nil, nil, err
	}
	custs, err := s.Store.ListTestClockCustomers(ctx, tenantID, id)
	if err != nil {
		return nil, nil, err
	}
	var out []*abacus.Invoice
	for _, c := range custs {
		subs, err := s.Store.ListSubscriptions(ctx, tenantID, c.ID)
		if err != nil {
			return nil, nil, err
		}
		for _, sub := range subs {
			f, err := s.Sync(ctx, sub, tc.Now)
			out = append(out, f...)
			if err != nil {
				return tc, out, fmt.Errorf("subscription %s: %w", sub.ID, err)
			}
		}
	}
	slices.SortFunc(out, func(a, b *abacus.Invoice) int { return a.IssueAt.Compare(b.IssueAt) })
	return tc, out, nil
}

// SyncTenant runs the scheduler over one tenant's subscriptions now and
// returns what it finalized.
func (s *Service) SyncTenant(ctx context.Context, tenantID string) ([]*abacus.Invoice, error) {
	subs, err := s.Store.ListSubscriptions(ctx, tenantID, "")
	if err != nil {
		return nil, err
	}
	var out []*abacus.Invoice
	for _, sub := range subs {
		now, err := s.CustomerNow(ctx, tenantID, sub.CustomerID)
		if err != nil {
			return out, err
		}
		f, err := s.Sync(ctx, sub, now)
		out = append(out, f...)
		if err != nil {
			return out, fmt.Errorf("subscription %s: %w", sub.ID, err)
		}
	}
	return out, nil
}
