package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/abacus-billing/abacus"
)

func (s *Server) postCustomer(w http.ResponseWriter, r *http.Request) {
	var c abacus.Customer
	if err := decode(r, &c); err != nil {
		s.error(w, r, err)
		return
	}
	c.TenantID, c.CreatedAt = keyFrom(r).TenantID, s.cfg.Clock.Now().UTC()
	if err := c.Validate(); err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.cfg.Store.CreateCustomer(r.Context(), &c); err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusCreated, c)
}

func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request) {
	c, err := s.cfg.Store.FindCustomer(r.Context(), keyFrom(r).TenantID, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, c)
}

// listCustomers pages by id: ?after=<last id>&limit=N (default 100, max 1000).
func (s *Server) listCustomers(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.error(w, r, abacus.Errorf(abacus.EINVALID, "limit: must be an integer from 1 to 1000, got %q", v))
			return
		}
		limit = n
	}
	cs, err := s.cfg.Store.ListCustomers(r.Context(), keyFrom(r).TenantID, r.URL.Query().Get("after"), limit)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"customers": cs})
}

func (s *Server) postMeter(w http.ResponseWriter, r *http.Request) {
	var m abacus.Meter
	if err := decode(r, &m); err != nil {
		s.error(w, r, err)
		return
	}
	m.TenantID, m.CreatedAt = keyFrom(r).TenantID, s.cfg.Clock.Now().UTC()
	if err := m.Validate(); err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.cfg.Store.CreateMeter(r.Context(), &m); err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusCreated, m)
}

func (s *Server) getMeter(w http.ResponseWriter, r *http.Request) {
	m, err := s.cfg.Store.FindMeter(r.Context(), keyFrom(r).TenantID, r.PathValue("key"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, m)
}

func (s *Server) listMeters(w http.ResponseWriter, r *http.Request) {
	ms, err := s.cfg.Store.ListMeters(r.Context(), keyFrom(r).TenantID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, map[string]any{"meters": ms})
}

// patchMeter changes name and description only. Any other field is a 409:
// it would change what history already aggregated means.
func (s *Server) patchMeter(w http.ResponseWriter, r *http.Request) {
	var in map[string]any
	if err := decode(r, &in); err != nil {
		s.error(w, r, err)
		return
	}
	var immutable []string
	for k := range in {
		if k != "name" && k != "description" {
			immutable = append(immutable, k)
		}
	}
	if len(immutable) > 0 {
		slices.Sort(immutable) // one message for one request, whatever the map order
		s.error(w, r, abacus.Errorf(abacus.ECONFLICT, "meter fields %s cannot change: that would silently rewrite aggregated history; create a new meter instead (only name and description may change)", strings.Join(immutable, ", ")))
		return
	}
	tenant, key := keyFrom(r).TenantID, r.PathValue("key")
	cur, err := s.cfg.Store.FindMeter(r.Context(), tenant, key)
	if err != nil {
		s.error(w, r, err)
		return
	}
	name, desc := cur.Name, cur.Description
	var p abacus.Problems
	if v, ok := in["name"]; ok {
		if name, ok = v.(string); !ok {
			p.Add("name", "must be a string")
		}
	}
	if v, ok := in["description"]; ok {
		if desc, ok = v.(string); !ok {
			p.Add("description", "must be a string")
		}
	}
	if err := p.Err(); err != nil {
		s.error(w, r, err)
		return
	}
	m, err := s.cfg.Store.RenameMeter(r.Context(), tenant, key, name, desc)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, m)
}

// APIKeyRequest is the body of POST /v1/api-keys.
type APIKeyRequest struct {
	Name   string         `json:"name"`
	Scopes []abacus.Scope `json:"scopes"`
}

// APIKeyResponse shows the secret once, at creation.
type APIKeyResponse struct {
	*abacus.APIKey
	Secret string `json:"secret,omitempty"`
}

func (s *Server) postAPIKey(w http.ResponseWriter, r *http.Request) {
	var in APIKeyRequest
	if err := decode(r, &in); err != nil {
		s.error(w, r, err)
		return
	}
	var p abacus.Problems
	if len(in.Scopes) == 0 {
		p.Add("scopes", "at least one of admin, ingest, read")
	}
	for i, sc := range in.Scopes {
		if !abacus.ValidScope(sc) {
			p.Add("scopes["+strconv.Itoa(i)+"]", "must be admin, ingest or read; got %q", sc)
		}
	}
	if len(in.Name) > 256 {
		p.Add("name", "must be at most 256 bytes")
	}
	if err := p.Err(); err != nil {
		s.error(w, r, err)
		return
	}
	secret, k := NewKey(keyFrom(r).TenantID, in.Name, in.Scopes, s.cfg.Clock.Now().UTC())
	if err := s.cfg.Store.CreateAPIKey(r.Context(), k); err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusCreated, APIKeyResponse{APIKey: k, Secret: secret})
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request) {
	ks, err := s.cfg.Store.ListAPIKeys(r.Context(), keyFrom(r).TenantID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if ks == nil {
		ks = []*abacus.APIKey{}
	}
	s.json(w, http.StatusOK, map[string]any{"api_keys": ks})
}
