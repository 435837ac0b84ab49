package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/postgres"
)

// TestSubscriptionCrashRecovery runs a real `abacus serve` process while an
// external producer sends the subscription histories of 200 customers
// (shuffled, with duplicates, in batches) and kills it with SIGKILL at
// random moments 4 to 6 times, restarting it each time. The producer
// resends every batch it got no 2xx for. At the end, once every event is
// applied, every customer's event outcomes, subscriptions and charge
// records must equal those of a reference server that received the same
// events once each, in order, and was never killed.
func TestSubscriptionCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server process")
	}
	bin := buildBinary(t)
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			db := func() string {
				if store == "postgres" {
					return postgres.TestSchemaURL(t)
				}
				return ""
			}
			testSubscriptionCrashRecovery(t, bin, db)
		})
	}
}

// subEvent is an external subscription event (subscription.ExternalEvent).
type subEvent struct {
	ID           string           `json:"id"`
	Customer     string           `json:"customer"`
	Subscription string           `json:"subscription"`
	Type         string           `json:"type"`
	EffectiveAt  time.Time        `json:"effective_at"`
	Version      int64            `json:"version,omitempty"`
	PreviousID   string           `json:"previous_id,omitempty"`
	Plan         string           `json:"plan,omitempty"`
	PlanVersion  int              `json:"plan_version,omitempty"`
	Anchor       string           `json:"billing_anchor,omitempty"`
	Discount     *abacus.Discount `json:"discount,omitempty"`
	DiscountKey  string           `json:"discount_key,omitempty"`
}

const subCrashCustomers = 200

var subCrashZones = []string{"Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo", "Australia/Sydney"}

// subHistories returns every customer's history in version order: a start,
// then changes, discounts, discount removals, sometimes a second
// subscription, sometimes a cancel at the end. Some events contradict the
// history (a removal of a discount not in force, a change before the
// start): they are rejected in their turn, the same way on every run. A
// third of the customers order their events by previous_id instead of
// version.
func subHistories() [][]subEvent {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plans := []struct {
		key     string
		version int
	}{{"basic", 1}, {"basic", 2}, {"pro", 1}}
	out := make([][]subEvent, subCrashCustomers)
	for i := range out {
		rng := rand.New(rand.NewPCG(uint64(i), 42))
		cust := fmt.Sprintf("c-%03d", i)
		n := 5 + rng.IntN(6)
		start := base.Add(time.Duration(rng.IntN(60*24)) * time.Hour)
		subs := []string{"s-" + cust}
		type applied struct {
			sub, key string
			at       time.Time
		}
		var discounts []applied
		var h []subEvent
		for k := 1; k <= n; k++ {
			e := subEvent{ID: fmt.Sprintf("e-%03d-%02d", i, k), Customer: cust, Subscription: subs[rng.IntN(len(subs))],
				EffectiveAt: start.Add(time.Duration(rng.IntN(100*24)-2*24) * time.Hour)}
			if k == 1 || i%3 != 0 {
				e.Version = int64(k)
			} else {
				e.PreviousID = h[k-2].ID
			}
			p := plans[rng.IntN(len(plans))]
			switch r := rng.IntN(100); {
			case k == 1:
				e.Type, e.Subscription, e.EffectiveAt = "start", subs[0], start
				e.Plan, e.PlanVersion, e.Anchor = p.key, p.version, []string{"calendar", "anniversary"}[rng.IntN(2)]
			case (k == n && r < 40) || r < 3:
				e.Type = "cancel"
				e.EffectiveAt = start.Add(time.Duration(60+rng.IntN(60)) * 24 * time.Hour)
			case len(subs) == 1 && r < 10:
				subs = append(subs, "s-"+cust+"-b")
				e.Type, e.Subscription = "start", subs[1]
				e.Plan, e.PlanVersion, e.Anchor = p.key, p.version, "anniversary"
			case r < 50:
				e.Type, e.Plan, e.PlanVersion = "change", p.key, p.version
			case r < 80:
				d := &abacus.Discount{Key: []string{"d1", "d2"}[rng.IntN(2)]}
				if rng.IntN(2) == 0 {
					d.Percent = fmt.Sprint(5 + rng.IntN(50))
				} else {
					d.Amount = fmt.Sprintf("%d.%02d", rng.IntN(5), 1+rng.IntN(99))
				}
				if rng.IntN(3) == 0 {
					d.Items = []string{"base"}
				}
				if rng.IntN(4) == 0 {
					u := e.EffectiveAt.Add(time.Duration(1+rng.IntN(40)) * 24 * time.Hour)
					d.Until = &u
				}
				e.Type, e.Discount = "discount", d
				discounts = append(discounts, applied{e.Subscription, d.Key, e.EffectiveAt})
			default:
				// Mostly a discount applied before, some days after it.
				e.Type, e.DiscountKey = "remove_discount", []string{"d1", "d2"}[rng.IntN(2)]
				if len(discounts) > 0 && rng.IntN(5) > 0 {
					d := discounts[rng.IntN(len(discounts))]
					e.Subscription, e.DiscountKey, e.EffectiveAt = d.sub, d.key, d.at.Add(time.Duration(1+rng.IntN(30*24))*time.Hour)
				}
			}
			h = append(h, e)
		}
		out[i] = h
	}
	return out
}

// subClient talks to one server with the crash test's admin key.
type subClient struct{ url string }

func (c subClient) do(method, path string, body any, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.url+path, r)
	req.Header.Set("Authorization", "Bearer "+crashKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := subHTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %s: %w", method, path, b, err)
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, nil
}

func (c subClient) must(t *testing.T, method, path string, body any, out any) {
	t.Helper()
	if _, err := c.do(method, path, body, out); err != nil {
		t.Fatal(err)
	}
}

// subHTTP bounds every request so that a producer never hangs on a server
// that died under it.
var subHTTP = &http.Client{Timeout: 30 * time.Second}

// setupSubscriptions creates the meter, the plans (basic twice: v1 and v2)
// and the customers.
func setupSubscriptions(t *testing.T, c subClient) {
	t.Helper()
	c.must(t, "POST", "/v1/meters", map[string]any{"key": "calls", "event_type": "api", "aggregation": "count"}, nil)
	price := func(unit string) map[string]any {
		return map[string]any{"version": 1, "currency": "EUR", "model": "per_unit", "unit_price": unit}
	}
	for _, p := range []struct{ key, amount, unit string }{{"basic", "10", "0.01"}, {"pro", "30", "0.005"}, {"basic", "12", "0.008"}} {
		c.must(t, "POST", "/v1/plans", map[string]any{"key": p.key, "currency": "EUR", "interval": "month", "charges": []map[string]any{
			{"key": "base", "type": "recurring", "amount": p.amount},
			{"key": "calls", "type": "usage", "meter": "calls", "price": price(p.unit)},
		}}, nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, subCrashCustomers)
	sem := make(chan struct{}, 8)
	for i := 0; i < subCrashCustomers; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := c.do("POST", "/v1/customers", map[string]any{"id": fmt.Sprintf("c-%03d", i), "time_zone": subCrashZones[i%len(subCrashZones)]}, nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// eventOutcome is what must be the same on both servers for one event.
type eventOutcome struct {
	ID           string `json:"id"`
	Subscription string `json:"subscription"`
	Type         string `json:"type"`
	Version      int64  `json:"version"`
	Status       string `json:"status"`
	Reason       string `json:"reason"`
	Duplicates   int64  `json:"duplicates"`
}

// customerState is a customer's final state on one server: its events'
// outcomes, its subscriptions and each subscription's charge records,
// without the server-local times (received_at, applied_at, updated_at,
// recorded_at, superseded_at) and duplicate counts.
type customerState struct {
	Events        []eventOutcome
	Subscriptions []json.RawMessage
	Charges       map[string][]json.RawMessage
}

// readCustomer returns the customer's state once all its n events are
// applied or rejected; ok is false while some are missing or held.
func readCustomer(c subClient, cust string, n int) (st customerState, ok bool, err error) {
	var evs struct{ Events []eventOutcome }
	if _, err := c.do("GET", "/v1/subscription-events?customer="+cust, nil, &evs); err != nil {
		return st, false, err
	}
	if len(evs.Events) != n {
		return st, false, nil
	}
	for i := range evs.Events {
		if evs.Events[i].Status == string(abacus.SubEventHeld) {
			return st, false, nil
		}
		evs.Events[i].Duplicates = 0
	}
	st.Events = evs.Events
	var subs struct {
		Subscriptions []map[string]any
	}
	if _, err := c.do("GET", "/v1/customers/"+cust+"/subscriptions", nil, &subs); err != nil {
		return st, false, err
	}
	st.Charges = map[string][]json.RawMessage{}
	for _, s := range subs.Subscriptions {
		id := s["id"].(string)
		for _, k := range []string{"updated_at", "status", "current_phase"} { // server-local or clock-dependent
			delete(s, k)
		}
		b, _ := json.Marshal(s)
		st.Subscriptions = append(st.Subscriptions, b)
		var cr struct {
			Charges []map[string]any
		}
		if _, err := c.do("GET", "/v1/subscriptions/"+id+"/charges", nil, &cr); err != nil {
			return st, false, err
		}
		for _, ch := range cr.Charges {
			if _, ok := ch["superseded_at"]; ok {
				return st, false, fmt.Errorf("charge %v of %s is superseded but listed as current", ch["id"], id)
			}
			delete(ch, "recorded_at")
			b, _ := json.Marshal(ch)
			st.Charges[id] = append(st.Charges[id], b)
		}
	}
	return st, true, nil
}

// readAll waits until every customer's events are applied and returns
// their states.
func readAllCustomers(t *testing.T, c subClient, hist [][]subEvent, timeout time.Duration) []customerState {
	t.Helper()
	out := make([]customerState, len(hist))
	deadline := time.Now().Add(timeout)
	for i, h := range hist {
		cust := h[0].Customer
		for {
			st, ok, err := readCustomer(c, cust, len(h))
			if err != nil {
				t.Fatalf("customer %s: %v", cust, err)
			}
			if ok {
				out[i] = st
				break
			}
			if time.Now().After(deadline) {
				var evs struct{ Events []eventOutcome }
				c.do("GET", "/v1/subscription-events?customer="+cust, nil, &evs)
				t.Fatalf("customer %s: %d events of %d stored, not all applied after %s: %+v", cust, len(evs.Events), len(h), timeout, evs.Events)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return out
}

func testSubscriptionCrashRecovery(t *testing.T, bin string, newDB func() string) {
	began := time.Now()
	hist := subHistories()
	var all []subEvent
	for _, h := range hist {
		all = append(all, h...)
	}

	// The reference: the same events once each, in order, applied before
	// the next batch is sent, on a server that is never killed.
	ref := startServer(t, bin, t.TempDir(), newDB())
	rc := subClient{ref.url}
	setupSubscriptions(t, rc)
	const refBatch = 100
	for i := 0; i < len(all); i += refBatch {
		var res struct {
			Accepted int
			Rejected []map[string]any
		}
		body := all[i:min(i+refBatch, len(all))]
		rc.must(t, "POST", "/v1/subscription-events?wait=true", body, &res)
		if res.Accepted != len(body) || len(res.Rejected) != 0 {
			t.Fatalf("reference: accepted %d of %d: %v", res.Accepted, len(body), res.Rejected)
		}
	}
	want := readAllCustomers(t, rc, hist, time.Minute)
	ref.kill()
	applied, rejected := 0, 0
	for _, st := range want {
		for _, e := range st.Events {
			if e.Status == string(abacus.SubEventApplied) {
				applied++
			} else {
				rejected++
			}
		}
	}
	t.Logf("reference: %d events of %d customers, %d applied, %d rejected in turn (%s)", len(all), len(hist), applied, rejected, time.Since(began).Round(time.Millisecond))
	if applied < len(all)*2/3 {
		t.Fatalf("only %d of %d events apply: the histories test little", applied, len(all))
	}

	// The delivery: shuffled, 15% of the events twice, in batches of 8;
	// every other batch waits for the events to be applied.
	rng := rand.New(rand.NewPCG(7, 11))
	delivery := slices.Clone(all)
	for _, e := range all {
		if rng.IntN(100) < 15 {
			delivery = append(delivery, e)
		}
	}
	rng.Shuffle(len(delivery), func(i, j int) { delivery[i], delivery[j] = delivery[j], delivery[i] })
	const batch = 8
	var batches [][]subEvent
	for i := 0; i < len(delivery); i += batch {
		// A batch may not carry one event twice (that is a rejection, not
		// a duplicate): a repeat goes into a batch of its own.
		b := delivery[i:min(i+batch, len(delivery))]
		seen := map[string]bool{}
		var keep, next []subEvent
		for _, e := range b {
			if seen[e.ID] {
				next = append(next, e)
				continue
			}
			seen[e.ID] = true
			keep = append(keep, e)
		}
		batches = append(batches, keep)
		if len(next) > 0 {
			batches = append(batches, next)
		}
	}
	acked := make([]bool, len(batches))
	var mu sync.Mutex
	countAcked := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range acked {
			if a {
				n++
			}
		}
		return n
	}

	// send resends every unacknowledged batch from 2 producers, about one
	// batch per 20ms each, until all are acknowledged or stop is closed.
	send := func(url string, stop <-chan struct{}) {
		c := subClient{url}
		work := make(chan int)
		var wg sync.WaitGroup
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range work {
					path := "/v1/subscription-events"
					if b%2 == 0 {
						path += "?wait=true"
					}
					var res struct {
						Accepted int
						Rejected []map[string]any
					}
					st, err := c.do("POST", path, batches[b], &res)
					if err == nil && st == 202 {
						if res.Accepted != len(batches[b]) {
							t.Errorf("batch %d: accepted %d of %d: %v", b, res.Accepted, len(batches[b]), res.Rejected)
						}
						mu.Lock()
						acked[b] = true
						mu.Unlock()
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	feed:
		for b := range batches {
			mu.Lock()
			done := acked[b]
			mu.Unlock()
			if done {
				continue
			}
			select {
			case work <- b:
			case <-stop:
				break feed
			}
		}
		close(work)
		wg.Wait()
	}

	dir := t.TempDir()
	db := newDB()
	s := startServer(t, bin, dir, db)
	setupSubscriptions(t, subClient{s.url})
	// The kills: how many and when differ from run to run (the seed is
	// logged); what is sent does not.
	seed := uint64(time.Now().UnixNano())
	krng := rand.New(rand.NewPCG(seed, 3))
	kills := 4 + krng.IntN(3)
	t.Logf("kill seed %d: %d kills", seed, kills)
	for k := 0; k < kills; k++ {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { send(s.url, stop); close(done) }()
		time.Sleep(time.Duration(100+krng.IntN(500)) * time.Millisecond)
		s.kill()
		close(stop)
		<-done
		s = startServer(t, bin, dir, db)
	}
	before := countAcked()
	t.Logf("%d of %d batches (%d events, %d of them repeats) acknowledged across %d kills", before, len(batches), len(delivery), len(delivery)-len(all), kills)
	if before == 0 || before == len(batches) {
		t.Fatalf("the kills did not land mid-load (acknowledged %d of %d batches): the test proves nothing", before, len(batches))
	}
	send(s.url, make(chan struct{}))
	if n := countAcked(); n != len(batches) {
		t.Fatalf("%d of %d batches acknowledged by a live server", n, len(batches))
	}

	c := subClient{s.url}
	got := readAllCustomers(t, c, hist, time.Minute)
	var held struct{ Events []eventOutcome }
	c.must(t, "GET", "/v1/subscription-events?status=held", nil, &held)
	if len(held.Events) != 0 {
		t.Fatalf("%d events still held: %+v", len(held.Events), held.Events)
	}
	mismatches := 0
	for i := range hist {
		if reflect.DeepEqual(got[i], want[i]) {
			continue
		}
		mismatches++
		if mismatches <= 3 {
			t.Errorf("customer %s differs from the reference:\n got  %s\n want %s", hist[i][0].Customer, renderCustomerState(got[i]), renderCustomerState(want[i]))
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d of %d customers differ from the reference run", mismatches, len(hist))
	}
	// Every repeat is counted as a duplicate, whatever the kills did: a
	// resent batch adds its events' duplicates too, so at least the planned
	// repeats are counted.
	var dups int64
	for _, h := range hist {
		var evs struct{ Events []eventOutcome }
		c.must(t, "GET", "/v1/subscription-events?customer="+h[0].Customer, nil, &evs)
		for _, e := range evs.Events {
			dups += e.Duplicates
		}
	}
	if dups < int64(len(delivery)-len(all)) {
		t.Fatalf("%d duplicates counted, fewer than the %d repeats delivered", dups, len(delivery)-len(all))
	}
	t.Logf("all %d customers equal the reference; %d duplicates discarded (%s)", len(hist), dups, time.Since(began).Round(time.Millisecond))
}

func renderCustomerState(st customerState) string {
	b, _ := json.MarshalIndent(st, "      ", "  ")
	return string(b)
}
