package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/subscription"
)

func (s *Server) postPlan(w http.ResponseWriter, r *http.Request) {
	var p abacus.Plan
	if err := decode(r, &p); err != nil {
		s.error(w, r, err)
		return
	}
	if p.Version != 0 {
		s.error(w, r, abacus.Errorf(abacus.EINVALID, "version: is assigned by Abacus (publishing a plan with an existing key creates its next version)"))
		return
	}
	p.TenantID, p.CreatedAt = keyFrom(r).TenantID, s.cfg.Clock.Now().UTC()
	if err := subscription.ValidatePlan(&p); err != nil {
		s.error(w, r, err)
		return
	}
	for i, c := range p.Charges {
		if c.Type != abacus.ChargeUsage {
			continue
		}
		if _, err := s.cfg.Store.FindMeter(r.Context(), p.TenantID, c.Meter); abacus.ErrorCode(err) == abacus.ENOTFOUND {
			s.error(w, r, abacus.Errorf(abacus.EINVALID, "charges[%d].meter: meter %q does not exist", i, c.Meter))
			return
		} else if err != nil {
			s.error(w, r, err)
			return
		}
	}
	if err := s.cfg.Store.CreatePlan(r.Context(), &p); err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusCreated, p)
}

func (s *Server) listPlans(w http.ResponseWriter, r *http.Request) {
	ps, err := s.cfg.Store.ListPlans(r.Context(), keyFrom(r).TenantID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"plans": nonNil(ps)})
}

// getPlan returns the latest version, or ?version=N.
func (s *Server) getPlan(w http.ResponseWriter, r *http.Request) {
	version := 0
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.error(w, r, abacus.Errorf(abacus.EINVALID, "version: must be a positive integer, got %q", v))
			return
		}
		version = n
	}
	p, err := s.cfg.Store.FindPlan(r.Context(), keyFrom(r).TenantID, r.PathValue("key"), version)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, p)
}

func (s *Server) listPlanVersions(w http.ResponseWriter, r *http.Request) {
	ps, err := s.cfg.Store.ListPlanVersions(r.Context(), keyFrom(r).TenantID, r.PathValue("key"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	if len(ps) == 0 {
		s.error(w, r, abacus.Errorf(abacus.ENOTFOUND, "plan %s not found", r.PathValue("key")))
		return
	}
	s.json(w, http.StatusOK, map[string]any{"versions": ps})
}

// SubscriptionResponse is a subscription with what is derived from the
// clock (status, the phase in force) and, for GET, its event history.
type SubscriptionResponse struct {
	*abacus.Subscription
	Status  string                   `json:"status"`
	Current *abacus.Phase            `json:"current_phase,omitempty"`
	Events  []*SubscriptionEventView `json:"events,omitempty"`
	Held    []*SubscriptionEventView `json:"held,omitempty"`
}

// SubscriptionEventView is a stored subscription event with its gap status.
type SubscriptionEventView struct {
	*abacus.SubscriptionEventRecord
	// GapOverdue: held for longer than the gap bound (an alert is raised).
	GapOverdue bool `json:"gap_overdue,omitempty"`
}

func (s *Server) subscriptionResponse(sub *abacus.Subscription) *SubscriptionResponse {
	now := s.cfg.Clock.Now()
	return &SubscriptionResponse{Subscription: sub, Status: sub.StatusAt(now), Current: sub.PhaseAt(now)}
}

func (s *Server) eventView(rec *abacus.SubscriptionEventRecord) *SubscriptionEventView {
	v := &SubscriptionEventView{SubscriptionEventRecord: rec}
	if rec.Status == abacus.SubEventHeld && s.cfg.Subscriptions != nil {
		v.GapOverdue = s.cfg.Clock.Now().Sub(rec.ReceivedAt) > s.cfg.Subscriptions.GapAlertAfter()
	}
	return v
}

func (s *Server) postSubscription(w http.ResponseWriter, r *http.Request) {
	var cmd subscription.CreateCommand
	if err := decode(r, &cmd); err != nil {
		s.error(w, r, err)
		return
	}
	sub, err := s.cfg.Commands.Create(r.Context(), keyFrom(r).TenantID, cmd)
	s.answerCommand(w, r, sub, err, http.StatusCreated)
}

func (s *Server) postChange(w http.ResponseWriter, r *http.Request) {
	var cmd subscription.ChangeCommand
	if err := decode(r, &cmd); err != nil {
		s.error(w, r, err)
		return
	}
	sub, err := s.cfg.Commands.Change(r.Context(), keyFrom(r).TenantID, r.PathValue("id"), cmd)
	s.answerCommand(w, r, sub, err, http.StatusOK)
}

func (s *Server) postCancel(w http.ResponseWriter, r *http.Request) {
	var cmd subscription.CancelCommand
	if err := decodeOptional(r, &cmd); err != nil {
		s.error(w, r, err)
		return
	}
	sub, err := s.cfg.Commands.Cancel(r.Context(), keyFrom(r).TenantID, r.PathValue("id"), cmd)
	s.answerCommand(w, r, sub, err, http.StatusOK)
}

func (s *Server) postDiscount(w http.ResponseWriter, r *http.Request) {
	var cmd subscription.DiscountCommand
	if err := decode(r, &cmd); err != nil {
		s.error(w, r, err)
		return
	}
	sub, err := s.cfg.Commands.ApplyDiscount(r.Context(), keyFrom(r).TenantID, r.PathValue("id"), cmd)
	s.answerCommand(w, r, sub, err, http.StatusOK)
}

func (s *Server) deleteDiscount(w http.ResponseWriter, r *http.Request) {
	cmd := subscription.RemoveDiscountCommand{Key: r.PathValue("key"), EventID: r.URL.Query().Get("event_id")}
	at, err := queryTime(r, "effective_at")
	if err != nil {
		s.error(w, r, err)
		return
	}
	cmd.EffectiveAt = at
	sub, err := s.cfg.Commands.RemoveDiscount(r.Context(), keyFrom(r).TenantID, r.PathValue("id"), cmd)
	s.answerCommand(w, r, sub, err, http.StatusOK)
}

func (s *Server) answerCommand(w http.ResponseWriter, r *http.Request, sub *abacus.Subscription, err error, status int) {
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, status, s.subscriptionResponse(sub))
}

// getSubscription is the current state with the history of events applied
// (and rejected in turn) and the events held for a predecessor.
func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) {
	tenant := keyFrom(r).TenantID
	sub, err := s.cfg.Store.FindSubscription(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	recs, err := s.cfg.Store.ListSubscriptionEvents(r.Context(), abacus.SubscriptionEventFilter{TenantID: tenant, SubscriptionID: sub.ID})
	if err != nil {
		s.error(w, r, err)
		return
	}
	resp := s.subscriptionResponse(sub)
	resp.Events, resp.Held = []*SubscriptionEventView{}, []*SubscriptionEventView{}
	for _, rec := range recs {
		if rec.Status == abacus.SubEventHeld {
			resp.Held = append(resp.Held, s.eventView(rec))
		} else {
			resp.Events = append(resp.Events, s.eventView(rec))
		}
	}
	s.json(w, http.StatusOK, resp)
}

// ChargesResponse is GET /v1/subscriptions/{id}/charges.
type ChargesResponse struct {
	At         *time.Time               `json:"at,omitempty"`
	AsOf       *time.Time               `json:"as_of,omitempty"`
	Charges    []*abacus.Charge         `json:"charges"`
	Prorations []subscription.Proration `json:"prorations"`
}

// getCharges lists the charge records: ?at=T those in force at T (time
// travel over effective time), ?as_of=T as they were known at T. An as_of
// read is made stable first (abacus.StableAsOf); as_of in the response is
// the instant read, earlier than asked when asked for a future not known
// yet.
func (s *Server) getCharges(w http.ResponseWriter, r *http.Request) {
	tenant := keyFrom(r).TenantID
	sub, err := s.cfg.Store.FindSubscription(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	f := abacus.ChargeFilter{TenantID: tenant, SubscriptionID: sub.ID}
	if f.At, err = queryTime(r, "at"); err != nil {
		s.error(w, r, err)
		return
	}
	if f.AsOf, err = queryTime(r, "as_of"); err != nil {
		s.error(w, r, err)
		return
	}
	if f.AsOf != nil {
		known, err := abacus.StableAsOf(r.Context(), s.cfg.Store, *f.AsOf, s.cfg.Clock.Now)
		if err != nil {
			s.error(w, r, err)
			return
		}
		f.AsOf = &known
	}
	charges, err := s.cfg.Store.ListCharges(r.Context(), f)
	if err != nil {
		s.error(w, r, err)
		return
	}
	pr, err := subscription.Prorations(sub, charges)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, ChargesResponse{At: f.At, AsOf: f.AsOf, Charges: nonNil(charges), Prorations: nonNil(pr)})
}

func (s *Server) listCustomerSubscriptions(w http.ResponseWriter, r *http.Request) {
	subs, err := s.cfg.Store.ListSubscriptions(r.Context(), keyFrom(r).TenantID, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := make([]*SubscriptionResponse, len(subs))
	for i, sub := range subs {
		out[i] = s.subscriptionResponse(sub)
	}
	s.json(w, http.StatusOK, map[string]any{"subscriptions": out})
}

// postSubscriptionEvents takes events from an external producer: one
// object or an array (at most subscription.MaxExternalEvents). 202 once the
// valid ones are durable on the log; ?wait=true answers once they are
// applied, with each event's status. 400 when none is valid.
func (s *Server) postSubscriptionEvents(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, s.cfg.Limits.MaxBodyBytes)
	if err != nil {
		s.error(w, r, err)
		return
	}
	raw, err := subscription.SplitBody(body)
	if err != nil {
		s.error(w, r, err)
		return
	}
	res, err := s.cfg.Commands.Accept(r.Context(), keyFrom(r).TenantID, raw, r.URL.Query().Get("wait") == "true")
	if err != nil {
		s.error(w, r, err)
		return
	}
	status := http.StatusAccepted
	if res.Accepted == 0 {
		status = http.StatusBadRequest
	}
	s.json(w, status, res)
}

func (s *Server) getSubscriptionEvent(w http.ResponseWriter, r *http.Request) {
	rec, err := s.cfg.Store.FindSubscriptionEvent(r.Context(), keyFrom(r).TenantID, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, s.eventView(rec))
}

// listSubscriptionEvents filters by ?customer=, ?subscription=, ?status=.
func (s *Server) listSubscriptionEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := abacus.SubscriptionEventFilter{TenantID: keyFrom(r).TenantID, CustomerID: q.Get("customer"),
		SubscriptionID: q.Get("subscription"), Status: abacus.SubscriptionEventStatus(q.Get("status"))}
	switch f.Status {
	case "", abacus.SubEventHeld, abacus.SubEventApplied, abacus.SubEventRejected:
	default:
		s.error(w, r, abacus.Errorf(abacus.EINVALID, "status: must be held, applied or rejected, got %q", f.Status))
		return
	}
	if f.CustomerID == "" && f.SubscriptionID == "" && f.Status == "" {
		s.error(w, r, abacus.Errorf(abacus.EINVALID, "give at least one of customer, subscription and status"))
		return
	}
	recs, err := s.cfg.Store.ListSubscriptionEvents(r.Context(), f)
	if err != nil {
		s.error(w, r, err)
		return
	}
	out := make([]*SubscriptionEventView, len(recs))
	for i, rec := range recs {
		out[i] = s.eventView(rec)
	}
	s.json(w, http.StatusOK, map[string]any{"events": out})
}

// listAlerts: ?open=true for unresolved ones only.
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	as, err := s.cfg.Store.ListAlerts(r.Context(), keyFrom(r).TenantID, r.URL.Query().Get("open") == "true")
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"alerts": nonNil(as)})
}

func queryTime(r *http.Request, name string) (*time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, abacus.Errorf(abacus.EINVALID, "%s: must be an RFC 3339 time such as 2026-01-31T00:00:00Z, got %q", name, v)
	}
	t = t.UTC()
	return &t, nil
}

// decodeOptional is decode for commands whose body may be empty.
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return decode(r, v)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
