package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/usage"
)

// getUsage: GET /v1/usage?meter=&customer=&from=&to=&window=&tz=&group_by=a,b&filter[dim]=v&as_of=
// (group_by and filter[dim] may repeat; several filter values mean "any of";
// as_of, with a customer, answers with the usage known at that instant).
func (s *Server) getUsage(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := usage.Query{TenantID: keyFrom(r).TenantID, Meter: v.Get("meter"), Customer: v.Get("customer"),
		Window: v.Get("window"), TimeZone: v.Get("tz"), Filter: map[string][]string{}, Clock: s.cfg.Clock}
	var p abacus.Problems
	if q.Meter == "" {
		p.Add("meter", "is required")
	}
	parse := func(name string) time.Time {
		s := v.Get(name)
		if s == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			p.Add(name, "must be an RFC 3339 time, got %q", s)
		}
		return t
	}
	q.From, q.To = parse("from"), parse("to")
	if asOf := parse("as_of"); !asOf.IsZero() {
		q.AsOf = &asOf
	}
	if q.To.IsZero() && v.Get("to") == "" {
		q.To = s.cfg.Clock.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	}
	for _, g := range v["group_by"] {
		for _, d := range strings.Split(g, ",") {
			if d = strings.TrimSpace(d); d != "" {
				q.GroupBy = append(q.GroupBy, d)
			}
		}
	}
	for k, vals := range v {
		if dim, ok := strings.CutPrefix(k, "filter["); ok && strings.HasSuffix(dim, "]") {
			q.Filter[strings.TrimSuffix(dim, "]")] = vals
		}
	}
	if err := p.Err(); err != nil {
		s.error(w, r, err)
		return
	}
	res, err := usage.Run(r.Context(), s.cfg.Store, q)
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.json(w, http.StatusOK, res)
}
