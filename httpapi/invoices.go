package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/invoice"
)

// invoices answers 503 when the server runs without invoicing.
func (s *Server) invoices(w http.ResponseWriter, r *http.Request) *invoice.Service {
	if s.cfg.Invoices == nil {
		s.error(w, r, abacus.Errorf(abacus.EUNAVAILABLE, "invoicing is not configured on this server"))
		return nil
	}
	return s.cfg.Invoices
}

// asOf parses the optional ?as_of= (RFC 3339).
func asOf(r *http.Request) (*time.Time, error) {
	v := r.URL.Query().Get("as_of")
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, abacus.Errorf(abacus.EINVALID, "as_of: must be an RFC 3339 timestamp, got %q", v)
	}
	t = t.UTC()
	return &t, nil
}

// listInvoices: ?customer=&subscription=&status=&test_clock=&after=&limit=
// (default 100, max 1000), ordered by id.
func (s *Server) listInvoices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := abacus.InvoiceFilter{TenantID: keyFrom(r).TenantID, CustomerID: q.Get("customer"), SubscriptionID: q.Get("subscription"),
		TestClockID: q.Get("test_clock"), Status: abacus.InvoiceStatus(q.Get("status")), After: q.Get("after"), Limit: 100}
	var p abacus.Problems
	switch f.Status {
	case "", abacus.InvoiceDraft, abacus.InvoiceFinalized, abacus.InvoiceVoid:
	default:
		p.Add("status", "must be draft, finalized or void, got %q", f.Status)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			p.Add("limit", "must be an integer from 1 to 1000, got %q", v)
		}
		f.Limit = n
	}
	if err := p.Err(); err != nil {
		s.error(w, r, err)
		return
	}
	invs, err := s.cfg.Store.ListInvoices(r.Context(), f)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"invoices": nonNil(invs)})
}

func (s *Server) invoiceView(w http.ResponseWriter, r *http.Request) *invoice.View {
	svc := s.invoices(w, r)
	if svc == nil {
		return nil
	}
	at, err := asOf(r)
	if err != nil {
		s.error(w, r, err)
		return nil
	}
	v, err := svc.Get(r.Context(), keyFrom(r).TenantID, r.PathValue("id"), at)
	if err != nil {
		s.error(w, r, err)
		return nil
	}
	return v
}

func (s *Server) getInvoice(w http.ResponseWriter, r *http.Request) {
	if v := s.invoiceView(w, r); v != nil {
		s.json(w, http.StatusOK, v)
	}
}

// getInvoiceHTML renders the invoice for people (and printing).
func (s *Server) getInvoiceHTML(w http.ResponseWriter, r *http.Request) {
	v := s.invoiceView(w, r)
	if v == nil {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := invoice.RenderHTML(w, v); err != nil {
		s.cfg.Logger.Error("rendering invoice", "invoice", v.ID, "err", err)
	}
}

// PreviewRequest is the body of POST /v1/invoices/preview.
type PreviewRequest struct {
	Customer string `json:"customer"`
}

func (s *Server) postInvoicePreview(w http.ResponseWriter, r *http.Request) {
	svc := s.invoices(w, r)
	if svc == nil {
		return
	}
	var in PreviewRequest
	if err := decode(r, &in); err != nil {
		s.error(w, r, err)
		return
	}
	if in.Customer == "" {
		s.error(w, r, abacus.Errorf(abacus.EINVALID, "customer: is required"))
		return
	}
	vs, err := svc.Preview(r.Context(), keyFrom(r).TenantID, in.Customer)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"invoices": vs})
}

// VoidRequest is the body of POST /v1/invoices/{id}/void.
type VoidRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) postInvoiceVoid(w http.ResponseWriter, r *http.Request) {
	svc := s.invoices(w, r)
	if svc == nil {
		return
	}
	var in VoidRequest
	if err := decode(r, &in); err != nil {
		s.error(w, r, err)
		return
	}
	inv, err := svc.Void(r.Context(), keyFrom(r).TenantID, r.PathValue("id"), in.Reason)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, inv)
}

func (s *Server) postCreditNote(w http.ResponseWriter, r *http.Request) {
	svc := s.invoices(w, r)
	if svc == nil {
		return
	}
	var in invoice.CreditNoteInput
	if err := decode(r, &in); err != nil {
		s.error(w, r, err)
		return
	}
	n, err := svc.CreateCreditNote(r.Context(), keyFrom(r).TenantID, r.PathValue("id"), in)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusCreated, n)
}

// listCreditNotes: ?invoice= (optional).
func (s *Server) listCreditNotes(w http.ResponseWriter, r *http.Request) {
	ns, err := s.cfg.Store.ListCreditNotes(r.Context(), keyFrom(r).TenantID, r.URL.Query().Get("invoice"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"credit_notes": nonNil(ns)})
}

// postInvoiceRun runs the scheduler over the tenant's subscriptions now
// (it also runs on its own every --invoice-interval).
func (s *Server) postInvoiceRun(w http.ResponseWriter, r *http.Request) {
	svc := s.invoices(w, r)
	if svc == nil {
		return
	}
	invs, err := svc.SyncTenant(r.Context(), keyFrom(r).TenantID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"finalized": nonNil(invs)})
}

// Test clocks.

// TestClockRequest is the body of POST /v1/test-clocks.
type TestClockRequest struct {
	ID   string    `json:"id"`
	Name string    `json:"name"`
	Now  time.Time `json:"now"`
}

func (s *Server) postTestClock(w http.ResponseWriter, r *http.Request) {
	var in TestClockRequest
	if err := decode(r, &in); err != nil {
		s.error(w, r, err)
		return
	}
	var p abacus.Problems
	if in.ID == "" {
		in.ID = "clock_" + strconv.FormatInt(s.cfg.Clock.Now().UnixNano(), 36)
	} else if reason := abacus.IDProblem(in.ID, 64); reason != "" {
		p.Add("id", "%s", reason)
	}
	if len(in.Name) > 256 {
		p.Add("name", "must be at most 256 bytes")
	}
	if in.Now.IsZero() {
		p.Add("now", "is required (RFC 3339): the clock's starting time")
	}
	if err := p.Err(); err != nil {
		s.error(w, r, err)
		return
	}
	c := &abacus.TestClock{TenantID: keyFrom(r).TenantID, ID: in.ID, Name: in.Name, Now: in.Now.UTC(), CreatedAt: s.cfg.Clock.Now().UTC()}
	if err := s.cfg.Store.CreateTestClock(r.Context(), c); err != nil {
		s.error(w, r, err)
		return
	}
	s.testClocks.forget(c.TenantID)
	s.json(w, http.StatusCreated, c)
}

func (s *Server) listTestClocks(w http.ResponseWriter, r *http.Request) {
	cs, err := s.cfg.Store.ListTestClocks(r.Context(), keyFrom(r).TenantID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"test_clocks": nonNil(cs)})
}

func (s *Server) getTestClock(w http.ResponseWriter, r *http.Request) {
	c, err := s.cfg.Store.FindTestClock(r.Context(), keyFrom(r).TenantID, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, c)
}

// AdvanceRequest is the body of POST /v1/test-clocks/{id}/advance.
type AdvanceRequest struct {
	To time.Time `json:"to"`
}

// postTestClockAdvance moves the clock and, before answering, finalizes
// what came due for its customers.
func (s *Server) postTestClockAdvance(w http.ResponseWriter, r *http.Request) {
	svc := s.invoices(w, r)
	if svc == nil {
		return
	}
	var in AdvanceRequest
	if err := decode(r, &in); err != nil {
		s.error(w, r, err)
		return
	}
	if in.To.IsZero() {
		s.error(w, r, abacus.Errorf(abacus.EINVALID, "to: is required (RFC 3339)"))
		return
	}
	c, invs, err := svc.AdvanceTestClock(r.Context(), keyFrom(r).TenantID, r.PathValue("id"), in.To)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"test_clock": c, "finalized": nonNil(invs)})
}

// testClockCache tells ingest which customers live on a test clock. Most
// tenants have no test clock; for them the answer is cached for a second
// and ingest pays nothing more.
type testClockCache struct {
	mu      sync.Mutex
	entries map[string]testClockEntry
}

type testClockEntry struct {
	has     bool
	expires time.Time
}

func (c *testClockCache) forget(tenant string) {
	c.mu.Lock()
	delete(c.entries, tenant)
	c.mu.Unlock()
}

// customerNow returns the ingest hook for a tenant, or nil when the tenant
// has no test clock.
func (s *Server) customerNow(ctx context.Context, tenantID string) (func(string) (time.Time, bool), error) {
	now := time.Now()
	c := &s.testClocks
	c.mu.Lock()
	e, ok := c.entries[tenantID]
	c.mu.Unlock()
	if !ok || now.After(e.expires) {
		cs, err := s.cfg.Store.ListTestClocks(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		e = testClockEntry{has: len(cs) > 0, expires: now.Add(time.Second)}
		c.mu.Lock()
		if c.entries == nil {
			c.entries = map[string]testClockEntry{}
		}
		c.entries[tenantID] = e
		c.mu.Unlock()
	}
	if !e.has {
		return nil, nil
	}
	seen := map[string]*time.Time{}
	return func(customer string) (time.Time, bool) {
		if t, ok := seen[customer]; ok {
			if t == nil {
				return time.Time{}, false
			}
			return *t, true
		}
		seen[customer] = nil
		cu, err := s.cfg.Store.FindCustomer(ctx, tenantID, customer)
		if err != nil || cu.TestClock == "" {
			return time.Time{}, false
		}
		tc, err := s.cfg.Store.FindTestClock(ctx, tenantID, cu.TestClock)
		if err != nil {
			return time.Time{}, false
		}
		t := tc.Now.UTC()
		seen[customer] = &t
		return t, true
	}, nil
}
