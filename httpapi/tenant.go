package httpapi

import (
	"net/http"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
)

// TenantResponse is GET/PATCH /v1/tenant. Durations are Go duration
// strings ("840h", "5m").
type TenantResponse struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	BackdateWindow string    `json:"backdate_window"`
	FutureSkew     string    `json:"future_skew"`
	InvoiceGrace   string    `json:"invoice_grace"`
	CreatedAt      time.Time `json:"created_at"`
}

// TenantSettingsRequest is the body of PATCH /v1/tenant; absent fields keep
// their value.
type TenantSettingsRequest struct {
	BackdateWindow *string `json:"backdate_window"`
	FutureSkew     *string `json:"future_skew"`
	InvoiceGrace   *string `json:"invoice_grace"`
}

// Bounds of the time settings: the backdating window is also the dedup
// horizon that matters (an older event is rejected before dedup), so it may
// not be made uselessly short or unboundedly long.
const (
	minBackdate = time.Hour
	maxBackdate = 400 * 24 * time.Hour
	maxSkew     = 24 * time.Hour
	// The invoice grace keeps an invoice a draft after its boundary; past
	// a month, late usage belongs on the next invoice as an adjustment.
	maxGrace = 31 * 24 * time.Hour
)

func tenantResponse(t *abacus.Tenant) TenantResponse {
	return TenantResponse{ID: t.ID, Name: t.Name, BackdateWindow: t.Settings.Backdate().String(), FutureSkew: t.Settings.Skew().String(),
		InvoiceGrace: t.Settings.Grace().String(), CreatedAt: t.CreatedAt}
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request) {
	t, err := s.cfg.Store.FindTenant(r.Context(), keyFrom(r).TenantID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, tenantResponse(t))
}

func (s *Server) patchTenant(w http.ResponseWriter, r *http.Request) {
	var in TenantSettingsRequest
	if err := decode(r, &in); err != nil {
		s.error(w, r, err)
		return
	}
	id := keyFrom(r).TenantID
	t, err := s.cfg.Store.FindTenant(r.Context(), id)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var p abacus.Problems
	parse := func(field string, v *string, lo, hi time.Duration) time.Duration {
		d, err := time.ParseDuration(*v)
		if err != nil || d < lo || d > hi {
			p.Add(field, "must be a duration from %s to %s such as \"72h\", got %q", lo, hi, *v)
		}
		return d
	}
	if in.BackdateWindow != nil {
		t.Settings.BackdateWindow = parse("backdate_window", in.BackdateWindow, minBackdate, maxBackdate)
	}
	if in.FutureSkew != nil {
		t.Settings.FutureSkew = parse("future_skew", in.FutureSkew, 0, maxSkew)
	}
	if in.InvoiceGrace != nil {
		t.Settings.InvoiceGrace = parse("invoice_grace", in.InvoiceGrace, time.Minute, maxGrace)
	}
	if err := p.Err(); err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.cfg.Store.UpdateTenantSettings(r.Context(), id, t.Settings); err != nil {
		s.error(w, r, err)
		return
	}
	s.tenants.forget(id)
	s.json(w, http.StatusOK, tenantResponse(t))
}

// tenantCache keeps tenants (their settings) for ingest, which needs them on
// every request. A change made through this process applies at once; one
// made through another process within tenantCacheTTL.
type tenantCache struct {
	mu      sync.Mutex
	entries map[string]tenantEntry
}

type tenantEntry struct {
	t       *abacus.Tenant
	expires time.Time
}

const tenantCacheTTL = 10 * time.Second

func (c *tenantCache) forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}

// tenant returns the tenant of an ingest request.
func (s *Server) tenant(r *http.Request, id string) (*abacus.Tenant, error) {
	now := time.Now()
	s.tenants.mu.Lock()
	e, ok := s.tenants.entries[id]
	s.tenants.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.t, nil
	}
	t, err := s.cfg.Store.FindTenant(r.Context(), id)
	if err != nil {
		return nil, err
	}
	s.tenants.mu.Lock()
	s.tenants.entries[id] = tenantEntry{t: t, expires: now.Add(tenantCacheTTL)}
	s.tenants.mu.Unlock()
	return t, nil
}
