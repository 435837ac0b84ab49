package abacus

import (
	"slices"
	"time"
)

// DefaultTenantID is the tenant created on first start of an empty data dir.
const DefaultTenantID = "default"

// Tenant is an isolated account. Every row of every table belongs to exactly
// one tenant, and every query is scoped by the tenant of the authenticated key.
type Tenant struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Settings  TenantSettings `json:"settings"`
	CreatedAt time.Time      `json:"created_at"`
}

// TenantSettings are the per-tenant knobs of the event-time contract.
type TenantSettings struct {
	// BackdateWindow is how old an event's time may be at ingest. Older events
	// are rejected per event. Zero means DefaultBackdateWindow.
	BackdateWindow time.Duration `json:"backdate_window"`
	// FutureSkew is how far in the future an event's time may be. Zero means
	// DefaultFutureSkew.
	FutureSkew time.Duration `json:"future_skew"`
	// InvoiceGrace is how long after a billing boundary its invoice stays
	// a draft, so that usage arriving late lands on it. Zero means
	// DefaultInvoiceGrace.
	InvoiceGrace time.Duration `json:"invoice_grace"`
}

// Defaults of the time contract (DESIGN.md, "Time").
const (
	DefaultBackdateWindow = 35 * 24 * time.Hour
	DefaultFutureSkew     = 5 * time.Minute
	DefaultInvoiceGrace   = 3 * time.Hour
)

// Grace returns the effective invoice grace.
func (s TenantSettings) Grace() time.Duration {
	if s.InvoiceGrace > 0 {
		return s.InvoiceGrace
	}
	return DefaultInvoiceGrace
}

// Backdate returns the effective backdating window.
func (s TenantSettings) Backdate() time.Duration {
	if s.BackdateWindow > 0 {
		return s.BackdateWindow
	}
	return DefaultBackdateWindow
}

// Skew returns the effective future skew.
func (s TenantSettings) Skew() time.Duration {
	if s.FutureSkew > 0 {
		return s.FutureSkew
	}
	return DefaultFutureSkew
}

// Scope is what an API key may do.
type Scope string

// Scopes. ScopeAdmin implies every other scope.
const (
	ScopeAdmin  Scope = "admin"  // configuration: keys, meters, customers
	ScopeIngest Scope = "ingest" // POST /v1/events
	ScopeRead   Scope = "read"   // queries
)

// ValidScope reports whether s is a known scope.
func ValidScope(s Scope) bool {
	return s == ScopeAdmin || s == ScopeIngest || s == ScopeRead
}

// APIKey is a credential of one tenant. The secret itself is never stored:
// Hash is SHA-256 of the presented key.
type APIKey struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	Scopes    []Scope   `json:"scopes"`
	Prefix    string    `json:"prefix"` // first characters of the key, to recognize it in lists
	Hash      []byte    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// Allows reports whether the key carries scope s (admin carries all).
func (k *APIKey) Allows(s Scope) bool {
	return slices.Contains(k.Scopes, ScopeAdmin) || slices.Contains(k.Scopes, s)
}
