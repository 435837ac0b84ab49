// Package httpapi is the JSON API of Abacus: one route table (routes.go),
// JSON responses and errors rendered in one place (render.go), and one file
// per resource.
package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/aggregate"
	"github.com/abacus-billing/abacus/ingest"
	"github.com/abacus-billing/abacus/invoice"
	"github.com/abacus-billing/abacus/subscription"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is what the API needs. Everything is passed in; nothing is global.
type Config struct {
	Store      abacus.Store
	Log        abacus.EventLog
	LogReady   func(context.Context) error
	Committer  *ingest.Committer
	Aggregator *aggregate.Aggregator
	Clock      abacus.Clock
	Logger     *slog.Logger
	Limits     ingest.Limits
	Registry   *prometheus.Registry
	Metrics    *ingest.Metrics
	// Commands processes subscription commands and external subscription
	// events; Subscriptions is the consumer applying them.
	Commands      *subscription.Processor
	Subscriptions *subscription.Consumer
	// Invoices runs invoicing; nil serves 503 on the invoice routes.
	Invoices *invoice.Service
}

// Server serves the API.
type Server struct {
	cfg     Config
	handler http.Handler
	keys    keyCache
	tenants tenantCache
	// testClocks tells ingest which tenants have test clocks.
	testClocks testClockCache
}

// New builds the server and its route table.
func New(cfg Config) *Server {
	cfg.Limits = cfg.Limits.Defaults()
	if cfg.Clock == nil {
		cfg.Clock = abacus.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = ingest.NewMetrics(nil)
	}
	s := &Server{cfg: cfg, keys: keyCache{entries: map[[32]byte]keyEntry{}}, tenants: tenantCache{entries: map[string]tenantEntry{}}}
	s.handler = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// NewKey returns a new random API key secret and its stored form.
func NewKey(tenantID, name string, scopes []abacus.Scope, now time.Time) (secret string, key *abacus.APIKey) {
	var b [20]byte
	rand.Read(b[:])
	secret = "abk_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
	var id [10]byte
	rand.Read(id[:])
	return secret, KeyFor(secret, tenantID, name, scopes, now, "key_"+strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(id[:])))
}

// KeyFor returns the stored form of a given secret.
func KeyFor(secret, tenantID, name string, scopes []abacus.Scope, now time.Time, id string) *abacus.APIKey {
	h := sha256.Sum256([]byte(secret))
	return &abacus.APIKey{ID: id, TenantID: tenantID, Name: name, Scopes: scopes, Prefix: secret[:min(len(secret), 8)], Hash: h[:], CreatedAt: now}
}

// keyCache remembers verified keys for a minute so that ingest does not hit
// the store on every request. Keys cannot be revoked yet; when they can,
// revocation must purge this cache.
type keyCache struct {
	mu      sync.Mutex
	entries map[[32]byte]keyEntry
}

type keyEntry struct {
	key     *abacus.APIKey
	expires time.Time
}

const keyCacheTTL = time.Minute

type ctxKey struct{}

// authenticate resolves the bearer key and checks its scope.
func (s *Server) authenticate(r *http.Request, scope abacus.Scope) (*abacus.APIKey, error) {
	h := r.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || secret == "" {
		return nil, abacus.Errorf(abacus.EUNAUTHORIZED, "missing API key: send the header Authorization: Bearer <key>")
	}
	sum := sha256.Sum256([]byte(secret))
	now := time.Now()
	s.keys.mu.Lock()
	e, ok := s.keys.entries[sum]
	s.keys.mu.Unlock()
	if !ok || now.After(e.expires) {
		k, err := s.cfg.Store.FindAPIKey(r.Context(), sum[:])
		if abacus.ErrorCode(err) == abacus.ENOTFOUND {
			return nil, abacus.Errorf(abacus.EUNAUTHORIZED, "unknown API key")
		} else if err != nil {
			return nil, err
		}
		e = keyEntry{key: k, expires: now.Add(keyCacheTTL)}
		s.keys.mu.Lock()
		s.keys.entries[sum] = e
		s.keys.mu.Unlock()
	}
	if !e.key.Allows(scope) {
		return nil, abacus.Errorf(abacus.EFORBIDDEN, "this API key lacks the %q scope", scope)
	}
	return e.key, nil
}

// keyFrom returns the authenticated key of a request that passed auth.
func keyFrom(r *http.Request) *abacus.APIKey {
	return r.Context().Value(ctxKey{}).(*abacus.APIKey)
}
