package httpapi

import (
	"context"
	"net/http"

	"github.com/abacus-billing/abacus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes is the whole API surface.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.cfg.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	}

	mux.Handle("POST /v1/events", s.auth(abacus.ScopeIngest, s.postEvents))
	mux.Handle("GET /v1/events/{id}", s.auth(abacus.ScopeRead, s.getEvent))
	mux.Handle("GET /v1/usage", s.auth(abacus.ScopeRead, s.getUsage))

	mux.Handle("POST /v1/customers", s.auth(abacus.ScopeAdmin, s.postCustomer))
	mux.Handle("GET /v1/customers", s.auth(abacus.ScopeRead, s.listCustomers))
	mux.Handle("GET /v1/customers/{id}", s.auth(abacus.ScopeRead, s.getCustomer))

	mux.Handle("POST /v1/meters", s.auth(abacus.ScopeAdmin, s.postMeter))
	mux.Handle("GET /v1/meters", s.auth(abacus.ScopeRead, s.listMeters))
	mux.Handle("GET /v1/meters/{key}", s.auth(abacus.ScopeRead, s.getMeter))
	mux.Handle("PATCH /v1/meters/{key}", s.auth(abacus.ScopeAdmin, s.patchMeter))

	mux.Handle("GET /v1/customers/{id}/subscriptions", s.auth(abacus.ScopeRead, s.listCustomerSubscriptions))

	mux.Handle("POST /v1/plans", s.auth(abacus.ScopeAdmin, s.postPlan))
	mux.Handle("GET /v1/plans", s.auth(abacus.ScopeRead, s.listPlans))
	mux.Handle("GET /v1/plans/{key}", s.auth(abacus.ScopeRead, s.getPlan))
	mux.Handle("GET /v1/plans/{key}/versions", s.auth(abacus.ScopeRead, s.listPlanVersions))

	mux.Handle("POST /v1/subscriptions", s.auth(abacus.ScopeAdmin, s.postSubscription))
	mux.Handle("GET /v1/subscriptions/{id}", s.auth(abacus.ScopeRead, s.getSubscription))
	mux.Handle("GET /v1/subscriptions/{id}/charges", s.auth(abacus.ScopeRead, s.getCharges))
	mux.Handle("POST /v1/subscriptions/{id}/change", s.auth(abacus.ScopeAdmin, s.postChange))
	mux.Handle("POST /v1/subscriptions/{id}/cancel", s.auth(abacus.ScopeAdmin, s.postCancel))
	mux.Handle("POST /v1/subscriptions/{id}/discounts", s.auth(abacus.ScopeAdmin, s.postDiscount))
	mux.Handle("DELETE /v1/subscriptions/{id}/discounts/{key}", s.auth(abacus.ScopeAdmin, s.deleteDiscount))
	mux.Handle("POST /v1/subscription-events", s.auth(abacus.ScopeAdmin, s.postSubscriptionEvents))
	mux.Handle("GET /v1/subscription-events", s.auth(abacus.ScopeRead, s.listSubscriptionEvents))
	mux.Handle("GET /v1/subscription-events/{id}", s.auth(abacus.ScopeRead, s.getSubscriptionEvent))
	mux.Handle("GET /v1/alerts", s.auth(abacus.ScopeRead, s.listAlerts))

	mux.Handle("GET /v1/invoices", s.auth(abacus.ScopeRead, s.listInvoices))
	mux.Handle("GET /v1/invoices/{id}", s.auth(abacus.ScopeRead, s.getInvoice))
	mux.Handle("GET /v1/invoices/{id}/html", s.auth(abacus.ScopeRead, s.getInvoiceHTML))
	mux.Handle("POST /v1/invoices/preview", s.auth(abacus.ScopeRead, s.postInvoicePreview))
	mux.Handle("POST /v1/invoices/run", s.auth(abacus.ScopeAdmin, s.postInvoiceRun))
	mux.Handle("POST /v1/invoices/{id}/void", s.auth(abacus.ScopeAdmin, s.postInvoiceVoid))
	mux.Handle("POST /v1/invoices/{id}/credit-notes", s.auth(abacus.ScopeAdmin, s.postCreditNote))
	mux.Handle("GET /v1/credit-notes", s.auth(abacus.ScopeRead, s.listCreditNotes))
	mux.Handle("POST /v1/test-clocks", s.auth(abacus.ScopeAdmin, s.postTestClock))
	mux.Handle("GET /v1/test-clocks", s.auth(abacus.ScopeRead, s.listTestClocks))
	mux.Handle("GET /v1/test-clocks/{id}", s.auth(abacus.ScopeRead, s.getTestClock))
	mux.Handle("POST /v1/test-clocks/{id}/advance", s.auth(abacus.ScopeAdmin, s.postTestClockAdvance))

	mux.Handle("GET /v1/tenant", s.auth(abacus.ScopeRead, s.getTenant))
	mux.Handle("PATCH /v1/tenant", s.auth(abacus.ScopeAdmin, s.patchTenant))

	mux.Handle("POST /v1/api-keys", s.auth(abacus.ScopeAdmin, s.postAPIKey))
	mux.Handle("GET /v1/api-keys", s.auth(abacus.ScopeAdmin, s.listAPIKeys))

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.error(w, r, abacus.Errorf(abacus.ENOTFOUND, "no route %s %s", r.Method, r.URL.Path))
	})
	return s.recoverer(mux)
}

// auth requires a key with scope and puts it in the request context.
func (s *Server) auth(scope abacus.Scope, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, err := s.authenticate(r, scope)
		if err != nil {
			s.error(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, k)))
	})
}

func (s *Server) recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				s.cfg.Logger.Error("panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				s.error(w, r, abacus.Errorf(abacus.EINTERNAL, "panic"))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	s.json(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz: the log and the store answer and the schema is migrated.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"store": "ok", "log": "ok"}
	status := http.StatusOK
	if err := s.cfg.Store.Ready(r.Context()); err != nil {
		checks["store"], status = err.Error(), http.StatusServiceUnavailable
	}
	if s.cfg.LogReady != nil {
		if err := s.cfg.LogReady(r.Context()); err != nil {
			checks["log"], status = err.Error(), http.StatusServiceUnavailable
		}
	}
	s.json(w, status, checks)
}
