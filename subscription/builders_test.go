package subscription_test

// Test data builders for the subscription consumer: a catalog of plans, the
// two stores, a fake CRM that produces a customer's events the way an
// external producer does (versions or previous_id chains), delivery orders
// (in order, shuffled, duplicated, batched, reversed, by effective time), a
// "world" that drives a Consumer by hand with increasing log sequences per
// partition, readers of the stored outcome, exact charge comparison, and the
// invariant checker every scenario and property test runs.

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/postgres"
	"github.com/abacus-billing/abacus/sqlite"
	"github.com/abacus-billing/abacus/subscription"
)

// ---------------------------------------------------------------------------
// Catalog

func usagePrice(unit string) json.RawMessage {
	return json.RawMessage(`{"version":1,"currency":"USD","model":"per_unit","unit_price":"` + unit + `"}`)
}

// catalog returns fresh copies of the test plans. Every world creates them
// once, in this order, so each is version 1 of its key.
//
//	basic   base 10.00/month in advance, calls 0.01 per api call
//	pro     base 30.00/month in advance, calls 0.005
//	team    base 50.00/month in advance, calls 0.004, support 15.00/month in arrears
//	starter 14-day trial, then base 20.00/month in advance, calls 0.01
func catalog() []*abacus.Plan {
	rec := func(key, name, amount string, timing abacus.FeeTiming) abacus.PlanCharge {
		return abacus.PlanCharge{Key: key, Name: name, Type: abacus.ChargeRecurring, Amount: amount, Timing: timing}
	}
	calls := func(unit string) abacus.PlanCharge {
		return abacus.PlanCharge{Key: "calls", Name: "API calls", Type: abacus.ChargeUsage, Meter: "api_calls", Price: usagePrice(unit)}
	}
	month := abacus.IntervalMonth
	return []*abacus.Plan{
		{Key: "basic", Name: "Basic", Currency: "USD", Interval: month, Charges: []abacus.PlanCharge{
			rec("base", "Platform fee", "10.00", abacus.InAdvance), calls("0.01")}},
		{Key: "pro", Name: "Pro", Currency: "USD", Interval: month, Charges: []abacus.PlanCharge{
			rec("base", "Platform fee", "30.00", abacus.InAdvance), calls("0.005")}},
		{Key: "team", Name: "Team", Currency: "USD", Interval: month, Charges: []abacus.PlanCharge{
			rec("base", "Platform fee", "50.00", abacus.InAdvance), calls("0.004"), rec("support", "Support", "15.00", abacus.InArrears)}},
		{Key: "starter", Name: "Starter", Currency: "USD", Interval: month, TrialDays: 14, Charges: []abacus.PlanCharge{
			rec("base", "Platform fee", "20.00", abacus.InAdvance), calls("0.01")}},
	}
}

// catalogPlans returns the validated catalog by ref, as the stores return it.
func catalogPlans(tb testing.TB) map[abacus.PlanRef]*abacus.Plan {
	tb.Helper()
	out := map[abacus.PlanRef]*abacus.Plan{}
	for _, p := range catalog() {
		if err := subscription.ValidatePlan(p); err != nil {
			tb.Fatalf("plan %s: %v", p.Key, err)
		}
		p.Version = 1
		out[abacus.PlanRef{Key: p.Key, Version: 1}] = p
	}
	return out
}

// planSource adapts a plan map to subscription.PlanSource.
func planSource(plans map[abacus.PlanRef]*abacus.Plan) subscription.PlanSource {
	return func(ref abacus.PlanRef) (*abacus.Plan, error) {
		if p, ok := plans[ref]; ok {
			return p, nil
		}
		return nil, abacus.Errorf(abacus.ENOTFOUND, "plan %s v%d not found", ref.Key, ref.Version)
	}
}

// itemKinds is how the catalog prices each item key; hand-written expected
// charges name the item, and Type, Timing and Meter follow from it.
var itemKinds = map[string]struct {
	Type   abacus.ChargeType
	Timing abacus.FeeTiming
	Meter  string
}{
	"base":    {abacus.ChargeRecurring, abacus.InAdvance, ""},
	"support": {abacus.ChargeRecurring, abacus.InArrears, ""},
	"calls":   {abacus.ChargeUsage, "", "api_calls"},
}

// ---------------------------------------------------------------------------
// Stores

// storeKind opens a fresh, empty store.
type storeKind struct {
	name string
	open func(tb testing.TB) abacus.Store
}

var (
	sqliteKind   = storeKind{"sqlite", openSQLite}
	postgresKind = storeKind{"postgres", openPostgres}
	allStores    = []storeKind{sqliteKind, postgresKind}
)

// openSQLite opens a store in a fresh directory: in /dev/shm when there is
// one (the store syncs every commit; on tmpfs a sync costs nothing, which
// keeps the property tests fast), else in t.TempDir.
func openSQLite(tb testing.TB) abacus.Store {
	tb.Helper()
	dir := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "abacus-subtest-"); err == nil {
			dir = d
			tb.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	if dir == "" {
		dir = tb.TempDir()
	}
	s, err := sqlite.Open(context.Background(), filepath.Join(dir, "abacus.db"))
	if err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(tb testing.TB) abacus.Store {
	tb.Helper()
	return postgres.OpenTestStore(tb)
}

// stepClock advances by step on every reading, so that every transaction
// of a world has its own time (recorded_at, superseded_at, applied_at).
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// last returns the latest reading without advancing.
func (c *stepClock) last() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// timeTravel records, after every applied message, the time of its
// transaction and the current records of every subscription, so that the
// bitemporal reads can be checked: as of the time of message k, ListCharges
// returns exactly what was current right after message k.
type timeTravel struct {
	at      []time.Time
	charges []map[string][]string // subscription -> chargeIDLines
}

func (tt *timeTravel) record(w *world) {
	w.tb.Helper()
	snap := map[string][]string{}
	for _, r := range w.events() {
		if _, ok := snap[r.SubscriptionID]; !ok {
			snap[r.SubscriptionID] = chargeIDLines(w.charges(r.SubscriptionID))
		}
	}
	tt.at = append(tt.at, w.clock.last())
	tt.charges = append(tt.charges, snap)
}

func (tt *timeTravel) check(tb testing.TB, w *world) {
	tb.Helper()
	for k, at := range tt.at {
		for sub, want := range tt.charges[k] {
			got, err := w.store.ListCharges(w.ctx, abacus.ChargeFilter{TenantID: w.tenant, SubscriptionID: sub, AsOf: &at})
			if err != nil {
				tb.Fatal(err)
			}
			if g := chargeIDLines(got); !slices.Equal(g, want) {
				tb.Errorf("subscription %s as of message %d (%s):\n  %s\nwas current then:\n  %s", sub, k+1, stamp(at),
					strings.Join(g, "\n  "), strings.Join(want, "\n  "))
			}
		}
	}
}

// ---------------------------------------------------------------------------
// The fake CRM: a history builder

// crm produces the subscription events of a tenant's customers as an
// external producer sends them (source "external", plan versions and time
// zones resolved): every event carries its customer's next version, or, in
// chained mode, names its predecessor (previous_id; the first event of a
// customer always has version 1).
type crm struct {
	tenant   string
	events   []*abacus.SubscriptionEvent
	byID     map[string]*abacus.SubscriptionEvent
	version  map[string]int64  // customer -> last version handed out
	lastID   map[string]string // customer -> its event at that version
	tz       map[string]string // customer -> time zone (default UTC)
	received time.Time
	chained  bool
	latest   map[string]time.Time // subscription -> latest effective time so far
}

func newCRM(tenant string) *crm {
	return &crm{tenant: tenant, byID: map[string]*abacus.SubscriptionEvent{}, version: map[string]int64{},
		lastID: map[string]string{}, tz: map[string]string{}, latest: map[string]time.Time{},
		received: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
}

// customers returns the customers with events, sorted.
func (c *crm) customers() []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range c.events {
		if !seen[e.CustomerID] {
			seen[e.CustomerID] = true
			out = append(out, e.CustomerID)
		}
	}
	sort.Strings(out)
	return out
}

// timeZone sets a customer's time zone (the zone its starts carry).
func (c *crm) timeZone(customer, tz string) *crm { c.tz[customer] = tz; return c }

// sub returns the builder of one subscription's events.
func (c *crm) sub(customer, id string) *subBuilder {
	return &subBuilder{crm: c, customer: customer, id: id}
}

// event returns a built event by id (panics if there is none: a typo in a
// test).
func (c *crm) event(id string) *abacus.SubscriptionEvent {
	e, ok := c.byID[id]
	if !ok {
		panic("no event " + id)
	}
	return e
}

// pick returns the events with these ids, in this order (ids may repeat:
// duplicates).
func (c *crm) pick(ids ...string) []*abacus.SubscriptionEvent {
	out := make([]*abacus.SubscriptionEvent, len(ids))
	for i, id := range ids {
		out[i] = c.event(id)
	}
	return out
}

// evOpt adjusts an event as it is built.
type evOpt func(*abacus.SubscriptionEvent)

// withVersion states the version explicitly (a taken or future version).
func withVersion(v int64) evOpt {
	return func(e *abacus.SubscriptionEvent) { e.Version, e.PreviousID = v, "" }
}

// withPrevious names the predecessor instead of a version.
func withPrevious(id string) evOpt {
	return func(e *abacus.SubscriptionEvent) { e.Version, e.PreviousID = 0, id }
}

// withAnchor sets a start's billing anchor (default calendar).
func withAnchor(a string) evOpt { return func(e *abacus.SubscriptionEvent) { e.Anchor = a } }

func (c *crm) add(e *abacus.SubscriptionEvent, opts []evOpt) *abacus.SubscriptionEvent {
	if _, dup := c.byID[e.ID]; dup {
		panic("event id used twice: " + e.ID)
	}
	cust := e.CustomerID
	e.TenantID, e.Source = c.tenant, "external"
	c.received = c.received.Add(time.Second)
	e.ReceivedAt = c.received
	next := c.version[cust] + 1
	if c.chained && next > 1 {
		e.PreviousID = c.lastID[cust]
	} else {
		e.Version = next
	}
	for _, o := range opts {
		o(e)
	}
	switch {
	case e.Version == 0 || e.Version > c.version[cust]:
		// a new place in the customer's order (a previous_id is taken to
		// name the last event, as a CRM's would)
		c.version[cust] = max(c.version[cust]+1, e.Version)
		c.lastID[cust] = e.ID
	}
	c.events = append(c.events, e)
	c.byID[e.ID] = e
	return e
}

// subBuilder builds one subscription's events; every method appends one
// event to the CRM's history, in the order called.
type subBuilder struct {
	crm      *crm
	customer string
	id       string
}

func (b *subBuilder) event(id string, typ abacus.SubscriptionEventType, at time.Time) *abacus.SubscriptionEvent {
	e := &abacus.SubscriptionEvent{ID: id, CustomerID: b.customer, SubscriptionID: b.id, Type: typ, EffectiveAt: at.UTC()}
	if at.After(b.crm.latest[b.id]) {
		b.crm.latest[b.id] = at
	}
	return e
}

// Start starts the subscription on a plan (version 1 of the key).
func (b *subBuilder) Start(id string, at time.Time, plan string, opts ...evOpt) *subBuilder {
	e := b.event(id, abacus.SubStart, at)
	e.Plan = &abacus.PlanRef{Key: plan, Version: 1}
	e.Anchor = abacus.AnchorCalendar
	e.TimeZone = cmp.Or(b.crm.tz[b.customer], "UTC")
	b.crm.add(e, opts)
	return b
}

// Change moves the subscription to a plan from at on.
func (b *subBuilder) Change(id string, at time.Time, plan string, opts ...evOpt) *subBuilder {
	e := b.event(id, abacus.SubChange, at)
	e.Plan = &abacus.PlanRef{Key: plan, Version: 1}
	b.crm.add(e, opts)
	return b
}

// Upgrade and Downgrade are Change, named for the reader.
func (b *subBuilder) Upgrade(id string, at time.Time, plan string, opts ...evOpt) *subBuilder {
	return b.Change(id, at, plan, opts...)
}

func (b *subBuilder) Downgrade(id string, at time.Time, plan string, opts ...evOpt) *subBuilder {
	return b.Change(id, at, plan, opts...)
}

// LateChange is a Change effective before an event the CRM sent earlier
// (panics if it is not: the test would not test what it says).
func (b *subBuilder) LateChange(id string, at time.Time, plan string, opts ...evOpt) *subBuilder {
	if latest := b.crm.latest[b.id]; !at.Before(latest) {
		panic(fmt.Sprintf("LateChange %s at %s is not before the latest effective time %s", id, at, latest))
	}
	return b.Change(id, at, plan, opts...)
}

// Cancel ends the subscription at at.
func (b *subBuilder) Cancel(id string, at time.Time, opts ...evOpt) *subBuilder {
	b.crm.add(b.event(id, abacus.SubCancel, at), opts)
	return b
}

// Discount applies d from at on.
func (b *subBuilder) Discount(id string, at time.Time, d abacus.Discount, opts ...evOpt) *subBuilder {
	e := b.event(id, abacus.SubDiscount, at)
	e.Discount = &d
	b.crm.add(e, opts)
	return b
}

// RemoveDiscount removes the discount key from at on.
func (b *subBuilder) RemoveDiscount(id string, at time.Time, key string, opts ...evOpt) *subBuilder {
	e := b.event(id, abacus.SubRemoveDiscount, at)
	e.DiscountKey = key
	b.crm.add(e, opts)
	return b
}

// chainCopy returns copies of events in which each event whose index is
// chosen by pick (and whose version is above 1) names its predecessor (the
// customer's event at version-1) instead of its version. The resolved
// versions are the same, so applying the copies must give the same result.
func chainCopy(events []*abacus.SubscriptionEvent, pick func(i int) bool) []*abacus.SubscriptionEvent {
	at := map[string]map[int64]string{} // customer -> version -> id
	for _, e := range events {
		if e.Version > 0 {
			if at[e.CustomerID] == nil {
				at[e.CustomerID] = map[int64]string{}
			}
			if _, taken := at[e.CustomerID][e.Version]; !taken {
				at[e.CustomerID][e.Version] = e.ID
			}
		}
	}
	out := make([]*abacus.SubscriptionEvent, len(events))
	for i, e := range events {
		x := *e
		if prev, ok := at[e.CustomerID][e.Version-1]; ok && e.Version > 1 && at[e.CustomerID][e.Version] == e.ID && pick(i) {
			x.Version, x.PreviousID = 0, prev
		}
		out[i] = &x
	}
	return out
}

// ---------------------------------------------------------------------------
// Delivery orders

// message is one log message: events of one customer (so of one partition).
type message []*abacus.SubscriptionEvent

// inOrder delivers the events one message each, as given.
func inOrder(events []*abacus.SubscriptionEvent) []message {
	out := make([]message, len(events))
	for i, e := range events {
		out[i] = message{e}
	}
	return out
}

// reversed delivers the events one each, last first.
func reversed(events []*abacus.SubscriptionEvent) []message {
	out := inOrder(events)
	slices.Reverse(out)
	return out
}

// shuffled delivers the events one each in a random order.
func shuffled(rng *rand.Rand, events []*abacus.SubscriptionEvent) []message {
	out := inOrder(events)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// byEffectiveTime delivers the events ordered by effective time (then id):
// the order a consumer that ignored versions would apply them in.
func byEffectiveTime(events []*abacus.SubscriptionEvent) []message {
	s := slices.Clone(events)
	slices.SortStableFunc(s, func(a, b *abacus.SubscriptionEvent) int {
		if c := a.EffectiveAt.Compare(b.EffectiveAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return inOrder(s)
}

// withDuplicates inserts n copies of randomly chosen events at random
// positions (before or after the original: a copy before it is simply the
// first arrival).
func withDuplicates(rng *rand.Rand, msgs []message, n int) []message {
	var all []*abacus.SubscriptionEvent
	for _, m := range msgs {
		all = append(all, m...)
	}
	out := slices.Clone(msgs)
	for range n {
		if len(all) == 0 {
			break
		}
		e := all[rng.IntN(len(all))]
		i := rng.IntN(len(out) + 1)
		out = slices.Insert(out, i, message{e})
	}
	return out
}

// batched merges runs of neighbouring messages of one customer into
// messages of up to maxEvents events (a log message holds a batch).
func batched(rng *rand.Rand, msgs []message, maxEvents int) []message {
	var out []message
	for _, m := range msgs {
		if n := len(out); n > 0 && len(out[n-1])+len(m) <= maxEvents &&
			out[n-1][0].TenantID == m[0].TenantID && out[n-1][0].CustomerID == m[0].CustomerID && rng.IntN(2) == 0 {
			out[n-1] = append(slices.Clone(out[n-1]), m...)
			continue
		}
		out = append(out, slices.Clone(m))
	}
	return out
}

// ---------------------------------------------------------------------------
// World: one tenant of one store, and a consumer driven by hand

const testPartitions = 4

type world struct {
	tb       testing.TB
	ctx      context.Context
	store    abacus.Store
	consumer *subscription.Consumer
	clock    *stepClock
	tenant   string
	plans    map[abacus.PlanRef]*abacus.Plan
	seq      map[int]uint64
	// afterEach, if set, runs after every applied message.
	afterEach func()
}

// newWorld creates the tenant, the catalog and the CRM's customers in
// store, and a consumer with no log: Apply needs none (the log is only
// read by Start, and the position tracker only publishes).
func newWorld(tb testing.TB, store abacus.Store, c *crm) *world {
	tb.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Every world has a tenant of its own: PostgreSQL advisory locks are
	// database-wide, and the store's lock keys name the tenant but not the
	// schema (TestScenarioLocksOfAnotherSchema), so worlds in other schemas
	// with the same tenant and customer ids would contend (and deadlock).
	// The tenant is in no outcome that runs compare.
	var suffix [4]byte
	_, _ = crand.Read(suffix[:])
	tenant := c.tenant + "-" + hex.EncodeToString(suffix[:])
	w := &world{tb: tb, ctx: ctx, store: store, tenant: tenant, seq: map[int]uint64{},
		clock: &stepClock{t: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), step: time.Millisecond}}
	if err := store.CreateTenant(ctx, &abacus.Tenant{ID: tenant, Name: tenant, CreatedAt: t0}); err != nil {
		tb.Fatalf("create tenant: %v", err)
	}
	w.plans = map[abacus.PlanRef]*abacus.Plan{}
	for _, p := range catalog() {
		p.TenantID, p.CreatedAt = tenant, t0
		if err := subscription.ValidatePlan(p); err != nil {
			tb.Fatalf("plan %s: %v", p.Key, err)
		}
		if err := store.CreatePlan(ctx, p); err != nil {
			tb.Fatalf("create plan %s: %v", p.Key, err)
		}
		if p.Version != 1 {
			tb.Fatalf("plan %s got version %d, want 1", p.Key, p.Version)
		}
		w.plans[abacus.PlanRef{Key: p.Key, Version: p.Version}] = p
	}
	for _, id := range c.customers() {
		cu := &abacus.Customer{TenantID: tenant, ID: id, Name: id, TimeZone: cmp.Or(c.tz[id], "UTC"), CreatedAt: t0}
		if err := store.CreateCustomer(ctx, cu); err != nil {
			tb.Fatalf("create customer %s: %v", id, err)
		}
	}
	w.consumer = subscription.NewConsumer(subscription.ConsumerConfig{Store: store, Clock: w.clock})
	return w
}

// localize returns copies of the events in the world's tenant.
func (w *world) localize(m message) message {
	out := make(message, len(m))
	for i, e := range m {
		x := *e
		x.TenantID = w.tenant
		out[i] = &x
	}
	return out
}

// deliver applies the messages in order, each with the next sequence of its
// partition. A message holding events of several customers is split per
// partition, keeping the order.
func (w *world) deliver(msgs []message) {
	w.tb.Helper()
	for _, m := range msgs {
		byPart := map[int][]*abacus.SubscriptionEvent{}
		var order []int
		for _, e := range w.localize(m) {
			p := abacus.Partition(e.TenantID, e.CustomerID, testPartitions)
			if _, ok := byPart[p]; !ok {
				order = append(order, p)
			}
			byPart[p] = append(byPart[p], e)
		}
		for _, p := range order {
			data, err := subscription.EncodeMessage(byPart[p])
			if err != nil {
				w.tb.Fatal(err)
			}
			w.seq[p]++
			if err := w.consumer.Apply(w.ctx, abacus.LogMessage{Partition: p, Sequence: w.seq[p], Data: data}); err != nil {
				w.tb.Fatalf("apply partition %d seq %d (%s): %v", p, w.seq[p], ids(byPart[p]), err)
			}
			if w.afterEach != nil {
				w.afterEach()
			}
		}
	}
}

func ids(events []*abacus.SubscriptionEvent) string {
	s := make([]string, len(events))
	for i, e := range events {
		s[i] = e.ID
	}
	return strings.Join(s, ",")
}

// planSource reads plans from the world's store.
func (w *world) planSource() subscription.PlanSource {
	return func(ref abacus.PlanRef) (*abacus.Plan, error) {
		return w.store.FindPlan(w.ctx, w.tenant, ref.Key, ref.Version)
	}
}

// charges returns a subscription's current charge records (no At, no AsOf).
func (w *world) charges(sub string) []*abacus.Charge {
	w.tb.Helper()
	cs, err := w.store.ListCharges(w.ctx, abacus.ChargeFilter{TenantID: w.tenant, SubscriptionID: sub})
	if err != nil {
		w.tb.Fatalf("list charges of %s: %v", sub, err)
	}
	return cs
}

func (w *world) subscription(id string) *abacus.Subscription {
	w.tb.Helper()
	s, err := w.store.FindSubscription(w.ctx, w.tenant, id)
	if err != nil {
		w.tb.Fatalf("find subscription %s: %v", id, err)
	}
	return s
}

func (w *world) event(id string) *abacus.SubscriptionEventRecord {
	w.tb.Helper()
	r, err := w.store.FindSubscriptionEvent(w.ctx, w.tenant, id)
	if err != nil {
		w.tb.Fatalf("find event %s: %v", id, err)
	}
	return r
}

func (w *world) events() []*abacus.SubscriptionEventRecord {
	w.tb.Helper()
	rs, err := w.store.ListSubscriptionEvents(w.ctx, abacus.SubscriptionEventFilter{TenantID: w.tenant})
	if err != nil {
		w.tb.Fatalf("list events: %v", err)
	}
	return rs
}

// ---------------------------------------------------------------------------
// Exact comparison of charge records

// wantCharge is an expected charge record, written by hand. Type, Timing
// and Meter follow from Item (itemKinds).
type wantCharge struct {
	Item      string
	Plan      string // "pro@1"
	Amount    string // "" for usage
	Discounts string // "launch:20%[base]" or "loyal:5.00", comma-separated
	Trial     bool
	From, To  string // "2026-01-16" (00:00 UTC) or RFC 3339; To "" is open
	Event     string
}

// ts parses a date (midnight UTC) or an RFC 3339 time.
func ts(s string) time.Time {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func discountText(ds []abacus.Discount) string {
	var parts []string
	for _, d := range ds {
		s := d.Key + ":"
		if d.Percent != "" {
			s += d.Percent + "%"
		} else {
			s += d.Amount
		}
		if len(d.Items) > 0 {
			s += "[" + strings.Join(d.Items, "+") + "]"
		}
		if d.Until != nil {
			s += "<" + stamp(*d.Until)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

func chargeText(item, plan string, typ abacus.ChargeType, amount string, timing abacus.FeeTiming, meter, disc string,
	trial bool, from time.Time, to *time.Time, event string) string {
	end := "open"
	if to != nil {
		end = stamp(*to)
	}
	return fmt.Sprintf("%-7s %-9s %-9s %-6s %-7s %-9s disc=[%s] trial=%-5v %s → %s by %s",
		item, plan, typ, amount, timing, meter, disc, trial, stamp(from), end, event)
}

// chargeLine is the comparable text of a stored record: every field that
// matters, without its id.
func chargeLine(c *abacus.Charge) string {
	return chargeText(c.Item, fmt.Sprintf("%s@%d", c.Plan.Key, c.Plan.Version), c.Type, c.Amount, c.Timing, c.Meter,
		discountText(c.Discounts), c.Trial, c.StartsAt, c.EndsAt, c.EventID)
}

func (w wantCharge) line() string {
	k, ok := itemKinds[w.Item]
	if !ok {
		panic("unknown item " + w.Item)
	}
	var to *time.Time
	if w.To != "" {
		t := ts(w.To)
		to = &t
	}
	return chargeText(w.Item, w.Plan, k.Type, w.Amount, k.Timing, k.Meter, w.Discounts, w.Trial, ts(w.From), to, w.Event)
}

// assertCharges compares stored records with the expected ones exactly
// (order: item, then start, as ListCharges returns them).
func assertCharges(tb testing.TB, what string, got []*abacus.Charge, want []wantCharge) {
	tb.Helper()
	var g, x []string
	for _, c := range got {
		g = append(g, chargeLine(c))
	}
	want = slices.Clone(want)
	slices.SortStableFunc(want, func(a, b wantCharge) int { // as ListCharges: item, then start
		if c := strings.Compare(a.Item, b.Item); c != 0 {
			return c
		}
		return ts(a.From).Compare(ts(b.From))
	})
	for _, c := range want {
		x = append(x, c.line())
	}
	if !slices.Equal(g, x) {
		tb.Errorf("%s: charges differ\n got:\n  %s\nwant:\n  %s", what, strings.Join(g, "\n  "), strings.Join(x, "\n  "))
	}
}

// sortCharges sorts records as ListCharges returns them: by item, then
// start (Derive returns them by phase).
func sortCharges(cs []*abacus.Charge) []*abacus.Charge {
	cs = slices.Clone(cs)
	slices.SortStableFunc(cs, func(a, b *abacus.Charge) int {
		if c := strings.Compare(a.Item, b.Item); c != 0 {
			return c
		}
		return a.StartsAt.Compare(b.StartsAt)
	})
	return cs
}

// chargeIDLines is the full comparable text of records, ids included.
func chargeIDLines(cs []*abacus.Charge) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID + " " + chargeLine(c)
	}
	return out
}

// ---------------------------------------------------------------------------
// Expected event outcomes

// wantEvent is an expected event record: Status, the resolved Version (0:
// do not check) and, for rejected events, a substring of the Reason.
type wantEvent struct {
	Status  abacus.SubscriptionEventStatus
	Version int64
	Reason  string
}

func applied(v int64) wantEvent { return wantEvent{Status: abacus.SubEventApplied, Version: v} }
func held(v int64) wantEvent    { return wantEvent{Status: abacus.SubEventHeld, Version: v} }
func rejected(v int64, reason string) wantEvent {
	return wantEvent{Status: abacus.SubEventRejected, Version: v, Reason: reason}
}

func (w *world) assertEvents(want map[string]wantEvent) {
	w.tb.Helper()
	for id, x := range want {
		r := w.event(id)
		if r.Status != x.Status || (x.Version != 0 && r.Version != x.Version) {
			w.tb.Errorf("event %s: %s v%d (%q), want %s v%d", id, r.Status, r.Version, r.Reason, x.Status, x.Version)
			continue
		}
		switch {
		case x.Status == abacus.SubEventRejected && (r.Reason == "" || !strings.Contains(r.Reason, x.Reason)):
			w.tb.Errorf("event %s: reason %q, want one containing %q", id, r.Reason, x.Reason)
		case x.Status != abacus.SubEventRejected && r.Reason != "":
			w.tb.Errorf("event %s: %s with reason %q", id, r.Status, r.Reason)
		}
		// applied_at: the time of its turn; a held event has not had it,
		// nor has one rejected for a taken version.
		if (x.Status == abacus.SubEventHeld || isTakenReject(r)) != (r.AppliedAt == nil) {
			w.tb.Errorf("event %s: status %s (%s) with applied_at %v", id, r.Status, r.Reason, r.AppliedAt)
		}
	}
}

// ---------------------------------------------------------------------------
// Invariants

// isTakenReject tells a rejection for a taken version (the event never had
// a turn) from a rejection in turn (it took its version).
// isTakenReject: rejected without taking a place in the order (its place
// was taken, or its previous_id chain broke), which AppliedAt tells.
func isTakenReject(r *abacus.SubscriptionEventRecord) bool {
	return r.Status == abacus.SubEventRejected && r.AppliedAt == nil
}

// checkInvariants checks what must hold of the stored state after any
// sequence of deliveries:
//
// Per customer, the order: the versions taken in turn (applied, or
// rejected in turn) are exactly 1..head, once each, and the head names the
// event at its version; every held event is blocked (its version is beyond
// head+1, or it names a predecessor that is unknown or itself held) and
// every blocked event is held; a rejection for a taken version names a
// version at or below the head.
//
// Per subscription: the stored read model and current charge records equal
// a fresh Derive of the stored applied history (ids included); the
// subscription's Version and LastEventID are its last applied event's; and,
// against an independent model of the semantics (a term's value at t is
// what the latest-applied event stating that term at or before t said), at
// every boundary, just before it and between boundaries: outside
// [start, end) no phase and no charge is in force; inside, PhaseAt(t) has
// the model's plan, trial and discounts, and exactly one record per item of
// that plan is in force, with the item's terms; no two abutting records of
// an item have the same terms (an item unaffected by a change is not
// split). With deep, the store's ListCharges(At) agrees at every probe.
func (w *world) checkInvariants(tb testing.TB, deep bool) {
	tb.Helper()
	recs := w.events()
	byCustomer := map[string][]*abacus.SubscriptionEventRecord{}
	for _, r := range recs {
		byCustomer[r.CustomerID] = append(byCustomer[r.CustomerID], r)
	}
	for cust, rs := range byCustomer {
		head, err := w.store.SubscriptionHead(w.ctx, w.tenant, cust)
		if err != nil {
			tb.Fatalf("head of %s: %v", cust, err)
		}
		checkOrder(tb, head, rs)

		appliedBySub := map[string][]*abacus.SubscriptionEventRecord{}
		for _, r := range rs {
			if r.Status == abacus.SubEventApplied {
				appliedBySub[r.SubscriptionID] = append(appliedBySub[r.SubscriptionID], r)
			}
		}
		subs, err := w.store.ListSubscriptions(w.ctx, w.tenant, cust)
		if err != nil {
			tb.Fatalf("list subscriptions of %s: %v", cust, err)
		}
		seen := map[string]bool{}
		for _, s := range subs {
			seen[s.ID] = true
			ev := appliedBySub[s.ID]
			slices.SortFunc(ev, func(a, b *abacus.SubscriptionEventRecord) int { return int(a.Version - b.Version) })
			w.checkSubscription(tb, s, ev, deep)
		}
		for id := range appliedBySub {
			if !seen[id] {
				tb.Errorf("subscription %s has applied events but is not stored", id)
			}
		}
	}
}

func checkOrder(tb testing.TB, head abacus.SubscriptionHead, rs []*abacus.SubscriptionEventRecord) {
	tb.Helper()
	taken := map[int64][]string{}
	status := map[string]*abacus.SubscriptionEventRecord{}
	for _, r := range rs {
		status[r.ID] = r
	}
	for _, r := range rs {
		switch {
		case r.Status == abacus.SubEventApplied || (r.Status == abacus.SubEventRejected && !isTakenReject(r)):
			taken[r.Version] = append(taken[r.Version], r.ID)
			if r.AppliedAt == nil {
				tb.Errorf("event %s is %s without applied_at", r.ID, r.Status)
			}
		case r.Status == abacus.SubEventRejected: // taken, or a broken chain (version 0)
			if r.Version < 0 || r.Version > head.Version || (r.Version == 0 && r.PreviousID == "") {
				tb.Errorf("event %s rejected for taken version %d, head is %d", r.ID, r.Version, head.Version)
			}
		case r.Status == abacus.SubEventHeld:
			if r.AppliedAt != nil {
				tb.Errorf("held event %s has applied_at", r.ID)
			}
			if r.Version > 0 && r.Version <= head.Version+1 {
				tb.Errorf("event %s is held at version %d, but the customer's head is %d: its turn has come", r.ID, r.Version, head.Version)
			}
			if r.Version == 0 {
				if r.PreviousID == "" {
					tb.Errorf("held event %s has neither version nor previous_id", r.ID)
				} else if p, ok := status[r.PreviousID]; ok && p.Status != abacus.SubEventHeld {
					tb.Errorf("event %s is held, but its predecessor %s is %s at version %d (head %d)", r.ID, r.PreviousID, p.Status, p.Version, head.Version)
				}
			}
		default:
			tb.Errorf("event %s has status %q", r.ID, r.Status)
		}
	}
	for v := int64(1); v <= head.Version; v++ {
		if len(taken[v]) != 1 {
			tb.Errorf("customer %s: version %d taken by %v, want exactly one event", head.CustomerID, v, taken[v])
		}
	}
	for v, ids := range taken {
		if v < 1 || v > head.Version {
			tb.Errorf("customer %s: %v took version %d beyond the head %d", head.CustomerID, ids, v, head.Version)
		}
	}
	if head.Version > 0 && (len(taken[head.Version]) != 1 || taken[head.Version][0] != head.EventID) {
		tb.Errorf("customer %s: head names %s at version %d, the event there is %v", head.CustomerID, head.EventID, head.Version, taken[head.Version])
	}
}

// subJSON is the comparable text of a read model (UpdatedAt is the time of
// the last write and differs between runs).
func subJSON(s *abacus.Subscription) string {
	x := *s
	x.UpdatedAt = time.Time{}
	b, err := json.Marshal(&x)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func (w *world) checkSubscription(tb testing.TB, s *abacus.Subscription, applied []*abacus.SubscriptionEventRecord, deep bool) {
	tb.Helper()
	stored := w.charges(s.ID)
	if len(applied) == 0 {
		tb.Errorf("subscription %s is stored without applied events", s.ID)
		return
	}
	events := make([]*abacus.SubscriptionEvent, len(applied))
	for i, r := range applied {
		e := r.SubscriptionEvent
		events[i] = &e
	}
	// The stored read model is a fresh derivation of the stored history.
	dsub, dcharges, err := subscription.Derive(events, w.planSource())
	if err != nil {
		tb.Errorf("subscription %s: deriving the stored applied history fails: %v", s.ID, err)
		return
	}
	if g, x := subJSON(s), subJSON(dsub); g != x {
		tb.Errorf("subscription %s: stored read model differs from Derive of its applied events\nstored:  %s\nderived: %s", s.ID, g, x)
	}
	if g, x := chargeIDLines(stored), chargeIDLines(sortCharges(dcharges)); !slices.Equal(g, x) {
		tb.Errorf("subscription %s: stored charges differ from Derive of its applied events\nstored:\n  %s\nderived:\n  %s",
			s.ID, strings.Join(g, "\n  "), strings.Join(x, "\n  "))
	}
	last := applied[len(applied)-1]
	if s.Version != last.Version || s.LastEventID != last.ID {
		tb.Errorf("subscription %s: version %d (%s), its last applied event is %s at %d", s.ID, s.Version, s.LastEventID, last.ID, last.Version)
	}

	m := newModel(tb, s.ID, events, w.plans)
	if m == nil {
		return
	}
	if !s.StartAt.Equal(m.start) || !timePtrEqual(s.EndsAt, m.end) || !timePtrEqual(s.TrialEndsAt, m.trialEnd) {
		tb.Errorf("subscription %s: start %s end %v trial end %v; the model says %s %v %v", s.ID, s.StartAt, s.EndsAt, s.TrialEndsAt, m.start, m.end, m.trialEnd)
	}
	appliedIDs := map[string]bool{}
	for _, e := range events {
		appliedIDs[e.ID] = true
	}
	for _, c := range stored {
		if c.SubscriptionID != s.ID || c.CustomerID != s.CustomerID || c.Currency != s.Currency || c.SupersededAt != nil || c.RecordedAt.IsZero() {
			tb.Errorf("subscription %s: record %s has subscription %s customer %s currency %s superseded %v recorded %v",
				s.ID, c.ID, c.SubscriptionID, c.CustomerID, c.Currency, c.SupersededAt, c.RecordedAt)
		}
		if c.EndsAt != nil && !c.EndsAt.After(c.StartsAt) {
			tb.Errorf("subscription %s: empty record %s", s.ID, chargeLine(c))
		}
		if !appliedIDs[c.EventID] {
			tb.Errorf("subscription %s: record %s names event %s, which is not an applied event of it", s.ID, c.ID, c.EventID)
		}
	}
	// Maximal records: neighbours of one item differ in their terms.
	byItem := map[string][]*abacus.Charge{}
	for _, c := range stored {
		byItem[c.Item] = append(byItem[c.Item], c)
	}
	for item, cs := range byItem {
		for i := 1; i < len(cs); i++ {
			a, b := cs[i-1], cs[i]
			if a.EndsAt != nil && a.EndsAt.Equal(b.StartsAt) && a.Plan == b.Plan && a.Trial == b.Trial && reflect.DeepEqual(a.Discounts, b.Discounts) {
				tb.Errorf("subscription %s: item %s is split without a change of terms:\n  %s\n  %s", s.ID, item, chargeLine(a), chargeLine(b))
			}
		}
	}
	// The latest applied event is in force at the end of the timeline: the
	// plan of the last phase is that of the latest-applied start or change
	// effective before the end.
	if len(s.Phases) > 0 {
		var lastPlan *abacus.PlanRef
		for _, e := range events {
			if (e.Type == abacus.SubStart || e.Type == abacus.SubChange) && (m.end == nil || e.EffectiveAt.Before(*m.end)) {
				lastPlan = e.Plan
			}
		}
		if lastPlan == nil || s.Phases[len(s.Phases)-1].Plan != *lastPlan {
			tb.Errorf("subscription %s: the last phase is on %v; the latest applied plan is %v", s.ID, s.Phases[len(s.Phases)-1].Plan, lastPlan)
		}
	}

	for _, t := range m.probes(s, stored) {
		w.checkInstant(tb, s, stored, m, t, deep)
	}
}

func timePtrEqual(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

// checkInstant checks the phase and the records in force at t against the
// model.
func (w *world) checkInstant(tb testing.TB, s *abacus.Subscription, stored []*abacus.Charge, m *model, t time.Time, deep bool) {
	tb.Helper()
	var inForce []*abacus.Charge
	for _, c := range stored {
		if c.InForce(t) {
			inForce = append(inForce, c)
		}
	}
	if deep {
		at, err := w.store.ListCharges(w.ctx, abacus.ChargeFilter{TenantID: w.tenant, SubscriptionID: s.ID, At: &t})
		if err != nil {
			tb.Fatal(err)
		}
		if g, x := chargeIDLines(at), chargeIDLines(inForce); !slices.Equal(g, x) {
			tb.Errorf("subscription %s at %s: ListCharges(At) returns\n  %s\nwant\n  %s", s.ID, stamp(t), strings.Join(g, "\n  "), strings.Join(x, "\n  "))
		}
	}
	ph := s.PhaseAt(t)
	if !m.active(t) {
		if ph != nil || len(inForce) > 0 {
			tb.Errorf("subscription %s at %s (outside [%s, %v)): phase %v, %d records in force", s.ID, stamp(t), stamp(m.start), m.end, ph, len(inForce))
		}
		return
	}
	plan, trial, discounts := m.at(t)
	p := w.plans[plan]
	if ph == nil {
		tb.Errorf("subscription %s at %s: no phase, the model says %s@%d", s.ID, stamp(t), plan.Key, plan.Version)
		return
	}
	if ph.Plan != plan || ph.Trial != trial || discountText(ph.Discounts) != discountText(discounts) {
		tb.Errorf("subscription %s at %s: phase %s@%d trial=%v disc=[%s]; the model says %s@%d trial=%v disc=[%s]", s.ID, stamp(t),
			ph.Plan.Key, ph.Plan.Version, ph.Trial, discountText(ph.Discounts), plan.Key, plan.Version, trial, discountText(discounts))
	}
	if len(inForce) != len(p.Charges) {
		tb.Errorf("subscription %s at %s: %d records in force, plan %s has %d items:\n  %s", s.ID, stamp(t), len(inForce), p.Key, len(p.Charges),
			strings.Join(chargeIDLines(inForce), "\n  "))
	}
	for _, item := range p.Charges {
		var hits []*abacus.Charge
		for _, c := range inForce {
			if c.Item == item.Key {
				hits = append(hits, c)
			}
		}
		if len(hits) != 1 {
			tb.Errorf("subscription %s at %s: %d records of item %s in force, want 1", s.ID, stamp(t), len(hits), item.Key)
			continue
		}
		c := hits[0]
		var want []abacus.Discount
		for _, d := range discounts {
			if len(d.Items) == 0 || slices.Contains(d.Items, item.Key) {
				want = append(want, d)
			}
		}
		if c.Plan != plan || c.Trial != trial || discountText(c.Discounts) != discountText(want) ||
			c.Type != item.Type || c.Amount != item.Amount || c.Timing != item.Timing || c.Meter != item.Meter ||
			c.Name != item.Name || string(c.Price) != string(item.Price) {
			tb.Errorf("subscription %s at %s: record %s\nwant item %s of %s@%d trial=%v disc=[%s] amount %s timing %s meter %s",
				s.ID, stamp(t), chargeLine(c), item.Key, plan.Key, plan.Version, trial, discountText(want), item.Amount, item.Timing, item.Meter)
		}
	}
}

// model is an independent statement of the semantics of an applied
// history (derive.go's package doc): a term's value at t is what the
// latest-applied event stating that term at or before t said; the
// subscription runs from its start to its earliest applied cancel; a trial
// lasts the start plan's trial days on the customer's calendar.
type model struct {
	events   []*abacus.SubscriptionEvent // applied, in version order
	start    time.Time
	end      *time.Time
	trialEnd *time.Time
}

func newModel(tb testing.TB, sub string, events []*abacus.SubscriptionEvent, plans map[abacus.PlanRef]*abacus.Plan) *model {
	tb.Helper()
	m := &model{events: events}
	var starts int
	for _, e := range events {
		switch e.Type {
		case abacus.SubStart:
			starts++
			m.start = e.EffectiveAt
			if p := plans[*e.Plan]; p != nil && p.TrialDays > 0 {
				loc, err := time.LoadLocation(e.TimeZone)
				if err != nil {
					tb.Fatal(err)
				}
				l := e.EffectiveAt.In(loc)
				end := localInstant(time.Date(l.Year(), l.Month(), l.Day()+p.TrialDays, l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC), loc)
				m.trialEnd = &end
			}
		case abacus.SubCancel:
			if t := e.EffectiveAt; m.end == nil || t.Before(*m.end) {
				m.end = &t
			}
		}
	}
	if starts != 1 || events[0].Type != abacus.SubStart {
		tb.Errorf("subscription %s: %d applied starts, first applied event %s", sub, starts, events[0].Type)
		return nil
	}
	return m
}

// localInstant returns the first instant at which loc's clock reads wall
// (a date and clock time written as UTC) or later: the earliest of the
// instants that read exactly wall (two when clocks go back), or, when
// clocks skip wall, the end of the skipped stretch.
func localInstant(wall time.Time, loc *time.Location) time.Time {
	var best time.Time
	for _, probe := range []time.Time{wall.Add(-36 * time.Hour), wall, wall.Add(36 * time.Hour)} {
		_, off := probe.In(loc).Zone()
		t := wall.Add(-time.Duration(off) * time.Second)
		l := t.In(loc)
		if time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC).Equal(wall) && (best.IsZero() || t.Before(best)) {
			best = t
		}
	}
	if !best.IsZero() {
		return best.UTC()
	}
	// Skipped: read with the offset before the jump, wall lies after it;
	// the zone in force there began at the jump.
	_, off := wall.Add(-36 * time.Hour).In(loc).Zone()
	start, _ := wall.Add(-time.Duration(off) * time.Second).In(loc).ZoneBounds()
	return start.UTC()
}

func (m *model) active(t time.Time) bool {
	return !t.Before(m.start) && (m.end == nil || t.Before(*m.end))
}

// at returns the terms in force at t.
func (m *model) at(t time.Time) (abacus.PlanRef, bool, []abacus.Discount) {
	var plan abacus.PlanRef
	disc := map[string]*abacus.SubscriptionEvent{}
	for _, e := range m.events { // version order: the last one that covers t wins
		if e.EffectiveAt.After(t) {
			continue
		}
		switch e.Type {
		case abacus.SubStart, abacus.SubChange:
			plan = *e.Plan
		case abacus.SubDiscount:
			disc[e.Discount.Key] = e
		case abacus.SubRemoveDiscount:
			disc[e.DiscountKey] = e
		}
	}
	var ds []abacus.Discount
	for _, e := range disc {
		if e.Type == abacus.SubDiscount && (e.Discount.Until == nil || e.Discount.Until.After(t)) {
			ds = append(ds, *e.Discount)
		}
	}
	slices.SortFunc(ds, func(a, b abacus.Discount) int { return strings.Compare(a.Key, b.Key) })
	trial := m.trialEnd != nil && t.Before(*m.trialEnd)
	return plan, trial, ds
}

// probes returns the instants to check: every boundary (start, end, trial
// end, effective times, discount ends, phase and record bounds), the
// nanosecond before each, the middle between neighbours, a day before the
// first and a year after the last.
func (m *model) probes(s *abacus.Subscription, cs []*abacus.Charge) []time.Time {
	var b []time.Time
	add := func(t *time.Time) {
		if t != nil {
			b = append(b, t.UTC())
		}
	}
	add(&m.start)
	add(m.end)
	add(m.trialEnd)
	for _, e := range m.events {
		add(&e.EffectiveAt)
		if e.Discount != nil {
			add(e.Discount.Until)
		}
	}
	for i := range s.Phases {
		add(&s.Phases[i].From)
		add(s.Phases[i].To)
	}
	for _, c := range cs {
		add(&c.StartsAt)
		add(c.EndsAt)
	}
	slices.SortFunc(b, time.Time.Compare)
	b = slices.CompactFunc(b, time.Time.Equal)
	out := []time.Time{b[0].Add(-24 * time.Hour)}
	for i, t := range b {
		out = append(out, t.Add(-time.Nanosecond), t)
		if i+1 < len(b) {
			out = append(out, t.Add(b[i+1].Sub(t)/2))
		}
	}
	return append(out, b[len(b)-1].Add(365*24*time.Hour))
}

// ---------------------------------------------------------------------------
// Outcome of a world, for comparing runs

// outcome is everything a run must reproduce exactly: event statuses
// (status, resolved version, reason), heads, read models and current
// charge records with their ids.
type outcome struct {
	Events  map[string]string
	Heads   map[string]string
	Subs    map[string]string
	Charges map[string][]string
}

func (w *world) outcome() outcome {
	w.tb.Helper()
	o := outcome{Events: map[string]string{}, Heads: map[string]string{}, Subs: map[string]string{}, Charges: map[string][]string{}}
	customers := map[string]bool{}
	for _, r := range w.events() {
		o.Events[r.ID] = fmt.Sprintf("%s v%d %s", r.Status, r.Version, r.Reason)
		customers[r.CustomerID] = true
	}
	for c := range customers {
		h, err := w.store.SubscriptionHead(w.ctx, w.tenant, c)
		if err != nil {
			w.tb.Fatal(err)
		}
		o.Heads[c] = fmt.Sprintf("v%d %s", h.Version, h.EventID)
		subs, err := w.store.ListSubscriptions(w.ctx, w.tenant, c)
		if err != nil {
			w.tb.Fatal(err)
		}
		for _, s := range subs {
			o.Subs[s.ID] = subJSON(s)
			o.Charges[s.ID] = chargeIDLines(w.charges(s.ID))
		}
	}
	return o
}

// diffOutcomes describes how two outcomes differ ("" if they do not).
func diffOutcomes(want, got outcome) string {
	var b strings.Builder
	diffMap := func(what string, x, g map[string]string) {
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			if x[k] != g[k] {
				fmt.Fprintf(&b, "%s %s:\n  want %s\n  got  %s\n", what, k, x[k], g[k])
			}
		}
	}
	diffMap("event", want.Events, got.Events)
	diffMap("head", want.Heads, got.Heads)
	diffMap("subscription", want.Subs, got.Subs)
	join := func(m map[string][]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = "\n    " + strings.Join(v, "\n    ")
		}
		return out
	}
	diffMap("charges of", join(want.Charges), join(got.Charges))
	return b.String()
}
