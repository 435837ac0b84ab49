package app_test

import (
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus/httpapi"
	"github.com/abacus-billing/abacus/usage"
)

type wireEvent struct {
	ID         string         `json:"id,omitempty"`
	Type       string         `json:"type,omitempty"`
	Customer   string         `json:"customer,omitempty"`
	Time       string         `json:"time,omitempty"`
	Properties map[string]any `json:"properties,omitempty"`
}

// TestEndToEnd ingests 100,000 distinct events across 1,000 customers and 3
// meters in batches, with 10% of them sent twice (half within the same
// request, half in a later one), a few conflicting repeats and invalid
// events mixed in, and checks every total exactly on both stores.
func TestEndToEnd(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { testEndToEnd(t, store) })
	}
}

func testEndToEnd(t *testing.T, store string) {
	a := start(t, store)
	for _, m := range []string{
		`{"key":"calls","event_type":"api","aggregation":"count"}`,
		`{"key":"tokens","event_type":"api","aggregation":"sum","value":"$.tokens","group_by":{"model":"$.model"}}`,
		`{"key":"peak","event_type":"api","aggregation":"max","value":"$.tokens"}`,
	} {
		mustStatus(t, 201, call(t, a, "POST", "/v1/meters", "", m, nil), "create meter")
	}
	const (
		distinct  = 100000
		customers = 1000
		batch     = 1000
	)
	now := time.Now().UTC().Truncate(time.Minute)
	ev := func(i int) wireEvent {
		// tokens i%50 + 0.25*(i%4): exact decimals, summed as big.Rat below.
		return wireEvent{ID: fmt.Sprintf("e-%d", i), Type: "api", Customer: fmt.Sprintf("c-%d", i%customers),
			Time:       now.Add(-time.Duration(i%7200) * time.Second).Format(time.RFC3339Nano),
			Properties: map[string]any{"tokens": json.Number(fmt.Sprintf("%d.%02d", i%50, (i%4)*25)), "model": []string{"m-small", "m-large"}[i%2]}}
	}
	// Expected totals per customer.
	calls := map[string]int64{}
	tokens := map[string]*big.Rat{}
	peak := map[string]*big.Rat{}
	byModel := map[string]*big.Rat{"m-small": new(big.Rat), "m-large": new(big.Rat)}
	for i := 0; i < distinct; i++ {
		e := ev(i)
		v, _ := new(big.Rat).SetString(string(e.Properties["tokens"].(json.Number)))
		calls[e.Customer]++
		if tokens[e.Customer] == nil {
			tokens[e.Customer], peak[e.Customer] = new(big.Rat), new(big.Rat)
		}
		tokens[e.Customer].Add(tokens[e.Customer], v)
		if v.Cmp(peak[e.Customer]) > 0 {
			peak[e.Customer].Set(v)
		}
		byModel[e.Properties["model"].(string)].Add(byModel[e.Properties["model"].(string)], v)
	}

	// Build the requests: every 10th event is repeated, alternately in the
	// same request and in the request after next; every 10,000th repeat
	// carries another payload (a conflict). Each request also carries two
	// invalid events.
	type request struct {
		body    []wireEvent
		invalid map[int]string // index → field the rejection must name
	}
	var reqs []request
	var later []wireEvent
	conflicts := map[string]bool{}
	for start := 0; start < distinct; start += batch {
		r := request{invalid: map[int]string{}}
		r.body = append(r.body, later...)
		later = nil
		for i := start; i < start+batch; i++ {
			r.body = append(r.body, ev(i))
			if i%10 == 0 {
				dup := ev(i)
				if i%10000 == 0 {
					dup.Properties = map[string]any{"tokens": 999999, "model": "m-small"}
					conflicts[dup.ID] = true
				}
				if i%20 == 0 {
					r.body = append(r.body, dup)
				} else {
					later = append(later, dup)
				}
			}
		}
		r.invalid[len(r.body)] = "customer"
		r.body = append(r.body, wireEvent{ID: fmt.Sprintf("bad-%d", start), Type: "api"})
		r.invalid[len(r.body)] = "time"
		r.body = append(r.body, wireEvent{ID: fmt.Sprintf("old-%d", start), Type: "api", Customer: "c-1", Time: now.Add(-40 * 24 * time.Hour).Format(time.RFC3339)})
		reqs = append(reqs, r)
	}
	if len(later) > 0 {
		reqs = append(reqs, request{body: later, invalid: map[int]string{}})
	}

	var wg sync.WaitGroup
	work := make(chan request)
	var mu sync.Mutex
	sent, accepted := 0, 0
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				var resp httpapi.IngestResponse
				if st := call(t, a, "POST", "/v1/events", "application/json", r.body, &resp); st != 202 {
					t.Errorf("ingest: status %d", st)
					continue
				}
				if len(resp.Rejected) != len(r.invalid) {
					t.Errorf("rejected %d events, want %d: %+v", len(resp.Rejected), len(r.invalid), resp.Rejected)
				}
				for _, rj := range resp.Rejected {
					if f, ok := r.invalid[rj.Index]; !ok || f != rj.Field || rj.ID != r.body[rj.Index].ID || rj.Reason == "" {
						t.Errorf("unexpected rejection %+v (want field %q)", rj, f)
					}
				}
				mu.Lock()
				sent += len(r.body)
				accepted += resp.Accepted
				mu.Unlock()
			}
		}()
	}
	for _, r := range reqs {
		work <- r
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if want := distinct + distinct/10; accepted != want {
		t.Fatalf("accepted %d events, want %d (distinct + repeats)", accepted, want)
	}
	catchUp(t, a)

	from := now.Add(-3 * time.Hour).Format(time.RFC3339)
	to := now.Add(time.Hour).Format(time.RFC3339)
	query := func(meter, extra string) *usage.Result {
		var res usage.Result
		mustStatus(t, 200, call(t, a, "GET", "/v1/usage?meter="+meter+"&from="+url.QueryEscape(from)+"&to="+url.QueryEscape(to)+extra, "", nil, &res), "usage "+meter)
		return &res
	}
	check := func(meter string, want func(customer string) string) {
		res := query(meter, "&group_by=customer")
		if len(res.Rows) != customers {
			t.Fatalf("%s: %d customer rows, want %d", meter, len(res.Rows), customers)
		}
		for _, r := range res.Rows {
			if r.Value == nil || *r.Value != want(r.Customer) {
				t.Fatalf("%s for %s = %v, want %s", meter, r.Customer, deref(r.Value), want(r.Customer))
			}
		}
	}
	check("calls", func(c string) string { return fmt.Sprint(calls[c]) })
	check("tokens", func(c string) string { return ratText(tokens[c]) })
	check("peak", func(c string) string { return ratText(peak[c]) })
	res := query("tokens", "&group_by=model")
	for _, r := range res.Rows {
		if *r.Value != ratText(byModel[r.Group["model"]]) {
			t.Fatalf("tokens for model %s = %s, want %s", r.Group["model"], *r.Value, ratText(byModel[r.Group["model"]]))
		}
	}
	one := query("calls", "&customer=c-7")
	if len(one.Rows) != 1 || *one.Rows[0].Value != "100" {
		t.Fatalf("calls of c-7 = %+v", one.Rows)
	}

	var e httpapi.EventResponse
	mustStatus(t, 200, call(t, a, "GET", "/v1/events/e-10", "", nil, &e), "get event")
	if e.Status != "duplicate" || e.Duplicates != 1 || len(e.Counted) != 3 {
		t.Fatalf("e-10 = %+v", e)
	}
	if c := e.Counted[2]; c.Meter != "tokens" || string(c.Group) != `{"model":"m-small"}` {
		t.Fatalf("e-10 counted in %s with group %s", c.Meter, c.Group)
	}
	mustStatus(t, 200, call(t, a, "GET", "/v1/events/e-20000", "", nil, &e), "get event")
	if e.Status != "conflict" || len(e.Conflicts) != 1 || string(e.Properties) != `{"model":"m-small","tokens":0.00}` {
		t.Fatalf("e-20000 = %+v %s", e, e.Properties)
	}
	mustStatus(t, 200, call(t, a, "GET", "/v1/events/e-11", "", nil, &e), "get event")
	if e.Status != "accepted" || e.Duplicates != 0 {
		t.Fatalf("e-11 = %+v", e)
	}
	mustStatus(t, 404, call(t, a, "GET", "/v1/events/bad-0", "", nil, nil), "rejected event is not stored")
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// ratText prints an exact decimal without trailing zeros.
func ratText(r *big.Rat) string {
	s := r.FloatString(12)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	return trimDot(s)
}

func trimDot(s string) string {
	if s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}
