package subscription_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/subscription"
)

// The property: the outcome of a customer's history does not depend on how
// its events reach the consumer. For random histories (several customers,
// 1-3 subscriptions each, 3-15 events per subscription, changes among two
// plans with different prices and a plan with a trial, discounts on some or
// all items, with or without an end, removals, cancels, effective times
// often before those of earlier events, and a few events that contradict
// the history), the in-order delivery to a fresh store is the expectation;
// the same events delivered shuffled, with duplicates, in batches, some
// naming their predecessor instead of their version, to another fresh
// store, must end with identical charge records (ids and every field), read
// models, heads and event statuses (status, resolved version, reason), and
// the invariants (checkInvariants) must hold.
//
// ABACUS_PROPERTY_SEED sets the first seed (default fixed, so CI is
// repeatable) and ABACUS_PROPERTY_CASES the number of histories; a failure
// prints the seed that reproduces it.

const defaultPropertySeed = 20260101

func propertyParams(t *testing.T, defaultCases int) (seed uint64, cases int) {
	seed, cases = defaultPropertySeed, defaultCases
	if raceEnabled() {
		// The race detector slows the pure-Go SQLite driver about
		// twentyfold; the race run looks for data races, not for more
		// histories.
		cases = max(10, cases/10)
	}
	if s := os.Getenv("ABACUS_PROPERTY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("ABACUS_PROPERTY_SEED: %v", err)
		}
		seed = v
	}
	if s := os.Getenv("ABACUS_PROPERTY_CASES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("ABACUS_PROPERTY_CASES: %v", err)
		}
		cases = v
	}
	return seed, cases
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// genLimits bounds a generated history.
type genLimits struct {
	minCustomers, maxCustomers int
	maxSubs                    int // 1..maxSubs per customer
	minEvents, maxEvents       int // per subscription, the start included
}

var propertyLimits = genLimits{minCustomers: 2, maxCustomers: 3, maxSubs: 3, minEvents: 3, maxEvents: 15}

// genStats counts what the generator produced, for the test log.
type genStats struct {
	events, late, rejectable, chained, duplicates, messages atomic.Int64
}

var zones = []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"}

// genHistory returns a random history. Each subscription's events are
// generated against an in-memory derivation of its valid events so far, so
// that nearly all are valid; a few that are not are kept on purpose (they
// must be rejected in their turn, identically in every run). A customer's
// subscriptions are interleaved at random in its version order.
func genHistory(rng *rand.Rand, tenant string, lim genLimits, stats *genStats) *crm {
	c := newCRM(tenant)
	plans := catalogPlansNoTB()
	src := planSource(plans)
	nCust := lim.minCustomers + rng.IntN(lim.maxCustomers-lim.minCustomers+1)
	for ci := range nCust {
		cust := fmt.Sprintf("c%d", ci+1)
		c.timeZone(cust, zones[rng.IntN(len(zones))])
		loc, _ := time.LoadLocation(c.tz[cust])
		nSubs := 1 + rng.IntN(lim.maxSubs)
		var perSub [][]func() // each sub's events, as builder calls in order
		for si := range nSubs {
			subID := fmt.Sprintf("%s-s%d", cust, si+1)
			b := c.sub(cust, subID)
			n := lim.minEvents + rng.IntN(lim.maxEvents-lim.minEvents+1)
			var calls []func()
			var valid []*abacus.SubscriptionEvent
			seq := 0
			newID := func() string { seq++; return fmt.Sprintf("%s-e%d", subID, seq) }
			// start
			startAt := randomInstant(rng, time.Date(2026, 1, 1, 0, 0, 0, 0, loc), 60, loc)
			startPlan := []string{"basic", "pro", "starter"}[rng.IntN(3)]
			anchor := abacus.AnchorCalendar
			if rng.IntN(3) == 0 {
				anchor = abacus.AnchorAnniversary
			}
			startID := newID()
			valid = append(valid, &abacus.SubscriptionEvent{ID: startID, CustomerID: cust, SubscriptionID: subID, Type: abacus.SubStart,
				EffectiveAt: startAt, Version: 1, Plan: &abacus.PlanRef{Key: startPlan, Version: 1}, Anchor: anchor, TimeZone: c.tz[cust]})
			calls = append(calls, func() { b.Start(startID, startAt, startPlan, withAnchor(anchor)) })
			latest := startAt
			for range n - 1 {
				var call func()
				contradict := rng.IntN(25) == 0 // about 4% contradict the history on purpose
				for try := 0; try < 12 && call == nil; try++ {
					e, mk := proposeEvent(rng, subID, cust, newID, startAt, latest, loc, valid)
					e.Version = int64(len(valid) + 1)
					_, _, err := subscription.Derive(append(slices.Clone(valid), e), src)
					var rej *subscription.RejectError
					switch {
					case err == nil:
						valid = append(valid, e)
						if e.EffectiveAt.Before(latest) {
							stats.late.Add(1)
						}
						if e.EffectiveAt.After(latest) {
							latest = e.EffectiveAt
						}
						call = func() { mk(b) }
					case errors.As(err, &rej) && contradict:
						stats.rejectable.Add(1)
						call = func() { mk(b) } // kept on purpose: rejected in turn
					case !errors.As(err, &rej):
						panic(err)
					default:
						seq-- // try again with the same id
					}
				}
				if call != nil {
					calls = append(calls, call)
				}
			}
			perSub = append(perSub, calls)
		}
		// Interleave the customer's subscriptions, keeping each one's order.
		for {
			var open []int
			for i, calls := range perSub {
				if len(calls) > 0 {
					open = append(open, i)
				}
			}
			if len(open) == 0 {
				break
			}
			i := open[rng.IntN(len(open))]
			perSub[i][0]()
			perSub[i] = perSub[i][1:]
		}
	}
	stats.events.Add(int64(len(c.events)))
	return c
}

func catalogPlansNoTB() map[abacus.PlanRef]*abacus.Plan {
	out := map[abacus.PlanRef]*abacus.Plan{}
	for _, p := range catalog() {
		if err := subscription.ValidatePlan(p); err != nil {
			panic(err)
		}
		p.Version = 1
		out[abacus.PlanRef{Key: p.Key, Version: 1}] = p
	}
	return out
}

// randomInstant returns an instant within days after from: at local
// midnight, at a whole local hour, or at any second.
func randomInstant(rng *rand.Rand, from time.Time, days int, loc *time.Location) time.Time {
	l := from.In(loc)
	d := rng.IntN(days + 1)
	switch rng.IntN(3) {
	case 0:
		return time.Date(l.Year(), l.Month(), l.Day()+d, 0, 0, 0, 0, loc).UTC()
	case 1:
		return time.Date(l.Year(), l.Month(), l.Day()+d, rng.IntN(24), 0, 0, 0, loc).UTC()
	}
	return from.Add(time.Duration(d)*24*time.Hour + time.Duration(rng.IntN(86400))*time.Second).UTC()
}

// proposeEvent returns a candidate event and the builder call that makes it.
func proposeEvent(rng *rand.Rand, sub, cust string, newID func() string, start, latest time.Time, loc *time.Location,
	valid []*abacus.SubscriptionEvent) (*abacus.SubscriptionEvent, func(*subBuilder)) {
	var at time.Time
	switch r := rng.IntN(10); {
	case r < 3 && latest.After(start): // late: before the latest effective time so far
		at = start.Add(time.Duration(rng.Int64N(int64(latest.Sub(start)))))
		if rng.IntN(2) == 0 { // on a local midnight when there is one in range
			l := at.In(loc)
			if m := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc); !m.Before(start) {
				at = m.UTC()
			}
		}
	case r < 4: // at the same instant as an earlier event
		at = valid[rng.IntN(len(valid))].EffectiveAt
	default:
		at = randomInstant(rng, latest.Add(time.Hour), 45, loc)
	}
	id := newID()
	e := &abacus.SubscriptionEvent{ID: id, CustomerID: cust, SubscriptionID: sub, EffectiveAt: at}
	switch r := rng.IntN(20); {
	case r < 8:
		plan := []string{"basic", "pro", "starter"}[rng.IntN(3)]
		e.Type, e.Plan = abacus.SubChange, &abacus.PlanRef{Key: plan, Version: 1}
		return e, func(b *subBuilder) { b.Change(id, at, plan) }
	case r < 13:
		d := abacus.Discount{Key: []string{"d1", "d2"}[rng.IntN(2)]}
		if rng.IntN(2) == 0 {
			d.Percent = []string{"10", "25", "50", "100"}[rng.IntN(4)]
		} else {
			d.Amount = []string{"1.50", "5", "0.01"}[rng.IntN(3)]
		}
		switch rng.IntN(3) {
		case 0:
			d.Items = []string{"base"}
		case 1:
			d.Items = []string{"calls"}
		}
		if rng.IntN(4) == 0 {
			u := at.Add(time.Duration(1+rng.IntN(40*24)) * time.Hour)
			d.Until = &u
		}
		dc := d
		e.Type, e.Discount = abacus.SubDiscount, &dc
		return e, func(b *subBuilder) { b.Discount(id, at, d) }
	case r < 17:
		key := []string{"d1", "d2"}[rng.IntN(2)]
		e.Type, e.DiscountKey = abacus.SubRemoveDiscount, key
		return e, func(b *subBuilder) { b.RemoveDiscount(id, at, key) }
	default:
		e.Type = abacus.SubCancel
		return e, func(b *subBuilder) { b.Cancel(id, at) }
	}
}

// scrambled is a random delivery of a history: some events name their
// predecessor instead of their version, the order is shuffled, some events
// are delivered more than once, and neighbours of one customer are batched.
func scrambled(rng *rand.Rand, c *crm, stats *genStats) []message {
	events := chainCopy(c.events, func(int) bool { return rng.IntN(3) == 0 })
	for _, e := range events {
		if e.Version == 0 {
			stats.chained.Add(1)
		}
	}
	dups := rng.IntN(len(events)/2 + 1)
	stats.duplicates.Add(int64(dups))
	msgs := batched(rng, withDuplicates(rng, shuffled(rng, events), dups), 1+rng.IntN(4))
	stats.messages.Add(int64(len(msgs)))
	return msgs
}

// runProperty runs one case: the in-order expectation, a scrambled run, and
// the comparison.
func runProperty(t *testing.T, kind storeKind, seed uint64, stats *genStats) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	c := genHistory(rng, "acme", propertyLimits, stats)
	ref := newWorld(t, kind.open(t), c)
	ref.deliver(inOrder(c.events))
	ref.checkInvariants(t, false)
	want := ref.outcome()

	w := newWorld(t, kind.open(t), c)
	w.deliver(scrambled(rng, c, stats))
	w.checkInvariants(t, false)
	if d := diffOutcomes(want, w.outcome()); d != "" {
		t.Errorf("the scrambled delivery ends differently from the in-order one:\n%s", d)
	}
	if held := countHeld(w); held > 0 {
		t.Errorf("%d events still held after every event was delivered", held)
	}
	if t.Failed() {
		t.Logf("reproduce: ABACUS_PROPERTY_SEED=%d ABACUS_PROPERTY_CASES=1 go test -run '%s' ./subscription/", seed, t.Name())
	}
}

func countHeld(w *world) int {
	n := 0
	for _, r := range w.events() {
		if r.Status == abacus.SubEventHeld {
			n++
		}
	}
	return n
}

// testProperty runs the cases on workers goroutines, each running its
// cases as subtests one after the other (the stores spend most of their
// time waiting for I/O, which -parallel, GOMAXPROCS by default, does not
// know).
func testProperty(t *testing.T, kind storeKind, defaultCases, workers int) {
	seed, cases := propertyParams(t, defaultCases)
	stats := &genStats{}
	start := time.Now()
	next := make(chan uint64)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				t.Run(strconv.FormatUint(s, 10), func(t *testing.T) { runProperty(t, kind, s, stats) })
			}
		}()
	}
	for i := range cases {
		next <- seed + uint64(i)
	}
	close(next)
	wg.Wait()
	t.Logf("%s: %d histories from seed %d: %d events (%d late, %d contradicting on purpose); scrambled runs: %d messages, %d duplicates, %d via previous_id; %s",
		kind.name, cases, seed, stats.events.Load(), stats.late.Load(), stats.rejectable.Load(), stats.messages.Load(),
		stats.duplicates.Load(), stats.chained.Load(), time.Since(start).Round(time.Millisecond))
}

func TestPropertyDeliveryOrderSQLite(t *testing.T) {
	testProperty(t, sqliteKind, 200, 2*runtime.GOMAXPROCS(0))
}

func TestPropertyDeliveryOrderPostgres(t *testing.T) { testProperty(t, postgresKind, 30, 6) }

// TestPropertyConcurrentPartitions applies the partitions of a scrambled
// delivery concurrently, each in its own order, as the consumer's read
// loops do (a failed transaction is retried, as applyRetrying does): the
// outcome equals the in-order delivery's. Customers live on one partition
// each, so partitions must not interfere.
func TestPropertyConcurrentPartitions(t *testing.T) {
	for _, kind := range allStores {
		t.Run(kind.name, func(t *testing.T) {
			seed, cases := propertyParams(t, 10)
			for i := range cases {
				s := seed + 1_000_000 + uint64(i)
				t.Run(strconv.FormatUint(s, 10), func(t *testing.T) {
					t.Parallel()
					stats := &genStats{}
					rng := rand.New(rand.NewPCG(s, 0xc0c0))
					lim := propertyLimits
					lim.minCustomers, lim.maxCustomers = 4, 6
					c := genHistory(rng, "acme", lim, stats)
					ref := newWorld(t, kind.open(t), c)
					ref.deliver(inOrder(c.events))
					want := ref.outcome()

					w := newWorld(t, kind.open(t), c)
					byPart := map[int][]message{}
					for _, m := range scrambled(rng, c, stats) {
						m = w.localize(m)
						p := abacus.Partition(m[0].TenantID, m[0].CustomerID, testPartitions)
						byPart[p] = append(byPart[p], m)
					}
					var wg sync.WaitGroup
					errs := make(chan error, len(byPart))
					for p, msgs := range byPart {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for i, m := range msgs {
								data, err := subscription.EncodeMessage(m)
								if err != nil {
									errs <- err
									return
								}
								msg := abacus.LogMessage{Partition: p, Sequence: uint64(i + 1), Data: data}
								for attempt := 0; ; attempt++ {
									err := w.consumer.Apply(w.ctx, msg)
									if err == nil {
										break
									}
									if attempt == 20 {
										errs <- fmt.Errorf("partition %d seq %d: %w", p, i+1, err)
										return
									}
									time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
								}
							}
						}()
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						t.Fatal(err)
					}
					w.checkInvariants(t, false)
					if d := diffOutcomes(want, w.outcome()); d != "" {
						t.Errorf("seed %d: concurrent partitions end differently from the in-order delivery:\n%s", s, d)
					}
					pos, err := w.store.SubscriptionPositions(w.ctx)
					if err != nil {
						t.Fatal(err)
					}
					for p, msgs := range byPart {
						if pos[p] != uint64(len(msgs)) {
							t.Errorf("partition %d: stored position %d, want %d", p, pos[p], len(msgs))
						}
					}
				})
			}
		})
	}
}

// FuzzDeliveryOrder delivers a generated history in an order the fuzz input
// picks: each input byte chooses the next event among those not delivered
// yet (its low bits), whether an already delivered event is delivered again
// first (bit 7), whether the event names its predecessor instead of its
// version (bit 6), and whether it joins the previous message (bit 5); when
// the input runs out the rest follows in order. The outcome must equal the
// in-order delivery's.
func FuzzDeliveryOrder(f *testing.F) {
	f.Add(uint64(1), []byte{})
	f.Add(uint64(2), []byte{0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8})
	f.Add(uint64(3), []byte{3, 0x81, 0x42, 0x27, 0xc5, 0, 0, 0x99, 7, 0x61})
	f.Add(uint64(4), []byte("reverse the history and duplicate it"))
	f.Add(uint64(5), []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80})
	type expectation struct {
		c    *crm
		want outcome
	}
	var mu sync.Mutex
	cache := map[uint64]expectation{} // per fuzz process: the in-order outcome of each seed
	f.Fuzz(func(t *testing.T, seed uint64, order []byte) {
		mu.Lock()
		x, ok := cache[seed]
		mu.Unlock()
		if !ok {
			rng := rand.New(rand.NewPCG(seed, 0xf022))
			x.c = genHistory(rng, "acme", genLimits{minCustomers: 1, maxCustomers: 2, maxSubs: 2, minEvents: 3, maxEvents: 8}, &genStats{})
			ref := newWorld(t, sqliteKind.open(t), x.c)
			ref.deliver(inOrder(x.c.events))
			x.want = ref.outcome()
			mu.Lock()
			cache[seed] = x
			mu.Unlock()
		}
		c, want := x.c, x.want

		// A previous_id stands for the customer's event one version before.
		prevOf := map[string]string{}
		byVersion := map[string]map[int64]string{}
		for _, e := range c.events {
			if byVersion[e.CustomerID] == nil {
				byVersion[e.CustomerID] = map[int64]string{}
			}
			if _, ok := byVersion[e.CustomerID][e.Version]; !ok {
				byVersion[e.CustomerID][e.Version] = e.ID
			}
		}
		for _, e := range c.events {
			if p, ok := byVersion[e.CustomerID][e.Version-1]; ok && byVersion[e.CustomerID][e.Version] == e.ID {
				prevOf[e.ID] = p
			}
		}
		remaining := slices.Clone(c.events)
		var sent []*abacus.SubscriptionEvent
		var msgs []message
		for i := 0; len(remaining) > 0; i++ {
			var b byte
			if i < len(order) {
				b = order[i]
			}
			if b&0x80 != 0 && len(sent) > 0 {
				msgs = append(msgs, message{sent[int(b)%len(sent)]})
			}
			k := 0
			if i < len(order) {
				k = int(b&0x1f) % len(remaining)
			}
			e := remaining[k]
			remaining = slices.Delete(remaining, k, k+1)
			if p, ok := prevOf[e.ID]; ok && b&0x40 != 0 {
				x := *e
				x.Version, x.PreviousID = 0, p
				e = &x
			}
			sent = append(sent, e)
			if n := len(msgs); b&0x20 != 0 && n > 0 && msgs[n-1][0].CustomerID == e.CustomerID {
				msgs[n-1] = append(slices.Clone(msgs[n-1]), e)
			} else {
				msgs = append(msgs, message{e})
			}
		}
		w := newWorld(t, sqliteKind.open(t), c)
		w.deliver(msgs)
		w.checkInvariants(t, false)
		if d := diffOutcomes(want, w.outcome()); d != "" {
			t.Errorf("seed %d order %x: the outcome differs from the in-order delivery's:\n%s", seed, order, d)
		}
	})
}
