// Package usage answers usage queries from the rollups: any meter, any
// customer or all, any window in any time zone, grouped and filtered by
// dimensions, exact for every aggregation. A query as of a knowledge
// instant (AsOf) is answered from the raw events known then.
package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/aggregate"
	"github.com/cockroachdb/apd/v3"
)

// Query is a usage query. From and To must be whole UTC minutes (rollups
// are per minute); windows follow TimeZone.
type Query struct {
	TenantID string
	Meter    string
	Customer string // empty: all customers
	From, To time.Time
	Window   string   // minute, hour, day, month or none (default none)
	TimeZone string   // IANA name; default the customer's zone, else UTC
	GroupBy  []string // meter dimensions and/or "customer"
	Filter   map[string][]string
	// AsOf answers with the usage as it was known at this instant: the
	// events aggregated at or before it (their knowledge stamp), none
	// aggregated later. It needs a Customer. The read is made stable
	// first (abacus.StableAsOf): when AsOf is later than the last
	// barrier, Run takes one, and an AsOf later than that barrier reads
	// as of the barrier (Result.AsOf says which instant was read).
	AsOf *time.Time
	// Clock is "now" for the barrier of an as-of read (nil: the system
	// clock).
	Clock abacus.Clock
}

// Row is one window of one group.
type Row struct {
	WindowStart time.Time         `json:"window_start"`
	WindowEnd   time.Time         `json:"window_end"`
	Customer    string            `json:"customer,omitempty"`
	Group       map[string]string `json:"group,omitempty"`
	Value       *string           `json:"value"` // decimal text; null when the window has no value
	Count       int64             `json:"count"` // events counted in the window
}

// Result is the answer to a Query.
type Result struct {
	Meter       string    `json:"meter"`
	Aggregation string    `json:"aggregation"`
	Window      string    `json:"window"`
	TimeZone    string    `json:"time_zone"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	// AsOf is the knowledge instant the rows reflect, for an as-of query.
	AsOf *time.Time `json:"as_of,omitempty"`
	Rows []Row      `json:"rows"`
}

// AvgScale is the number of fractional digits of avg results (rounded half
// to even); every other aggregation is exact.
const AvgScale = 12

// Run answers q. Errors: EINVALID (the message names the parameter),
// ENOTFOUND (meter).
//
// Without AsOf it reads the rollups. With AsOf it reads the customer's raw
// events known by then (abacus.KnowledgeStore.ScanEvents), turns them into
// per-minute rollup deltas with the aggregator's own code (aggregate.Rollup)
// and accumulates those exactly as stored rollups: when every event is
// known, both paths give the same rows.
func Run(ctx context.Context, s abacus.Store, q Query) (*Result, error) {
	m, err := s.FindMeter(ctx, q.TenantID, q.Meter)
	if err != nil {
		return nil, err
	}
	var p abacus.Problems
	if q.Window == "" {
		q.Window = WindowNone
	}
	if !slices.Contains([]string{WindowMinute, WindowHour, WindowDay, WindowMonth, WindowNone}, q.Window) {
		p.Add("window", "must be minute, hour, day, month or none; got %q", q.Window)
	}
	if q.From.IsZero() {
		p.Add("from", "is required (RFC 3339)")
	} else if q.From.Truncate(time.Minute) != q.From {
		p.Add("from", "must be a whole minute")
	}
	if q.To.IsZero() {
		p.Add("to", "is required (RFC 3339)")
	} else if q.To.Truncate(time.Minute) != q.To {
		p.Add("to", "must be a whole minute")
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		p.Add("to", "must be after from")
	}
	for _, d := range q.GroupBy {
		if _, ok := m.GroupBy[d]; !ok && d != abacus.ReservedDimension {
			p.Add("group_by", "meter %s has no dimension %q", m.Key, d)
		}
	}
	for d := range q.Filter {
		if _, ok := m.GroupBy[d]; !ok && d != abacus.ReservedDimension {
			p.Add("filter", "meter %s has no dimension %q", m.Key, d)
		}
	}
	if q.AsOf != nil && q.Customer == "" {
		p.Add("customer", "is required with as_of (usage as of an instant is computed from one customer's raw events)")
	}
	if q.TimeZone == "" {
		q.TimeZone = "UTC"
		if q.Customer != "" {
			if c, err := s.FindCustomer(ctx, q.TenantID, q.Customer); err == nil {
				q.TimeZone = c.TimeZone
			}
		}
	}
	loc, err := time.LoadLocation(q.TimeZone)
	if err != nil {
		p.Add("tz", "unknown IANA time zone %q", q.TimeZone)
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	ws, err := windows(q.From, q.To, q.Window, loc)
	if err != nil {
		return nil, abacus.Errorf(abacus.EINVALID, "window: %v", err)
	}
	f := abacus.RollupFilter{TenantID: q.TenantID, Meter: m.Key, Customer: q.Customer,
		FromMinute: q.From.Unix() / 60, ToMinute: q.To.Unix() / 60}
	acc := newAccumulator(m, q, ws)
	res := &Result{Meter: m.Key, Aggregation: string(m.Aggregation), Window: q.Window, TimeZone: q.TimeZone, From: q.From, To: q.To}
	switch {
	case q.AsOf != nil:
		var known time.Time
		if known, err = stableAsOf(ctx, s, q); err == nil {
			res.AsOf = &known
			err = acc.addKnown(ctx, s, q, known)
		}
	case m.Aggregation == abacus.AggUniqueCount:
		err = s.ScanUniques(ctx, f, acc.addUnique)
		if err == nil {
			// Event counts come from the rollups of the same meter.
			err = s.ScanRollups(ctx, f, acc.addCount)
		}
	default:
		err = s.ScanRollups(ctx, f, acc.add)
	}
	if err != nil {
		return nil, err
	}
	if res.Rows, err = acc.rows(); err != nil {
		return nil, err
	}
	return res, nil
}

func stableAsOf(ctx context.Context, s abacus.Store, q Query) (time.Time, error) {
	clock := q.Clock
	if clock == nil {
		clock = abacus.SystemClock{}
	}
	return abacus.StableAsOf(ctx, s, *q.AsOf, clock.Now)
}

// addKnown accumulates the customer's events known by the instant known:
// each is evaluated and rolled up per minute by aggregate.Rollup, as the
// aggregator did when it applied it, and the resulting rows go through the
// same accumulation as stored rollup rows.
func (a *accumulator) addKnown(ctx context.Context, s abacus.Store, q Query, known time.Time) error {
	m, err := aggregate.CompileMeter(a.m)
	if err != nil {
		return err
	}
	roll := aggregate.NewRollup()
	f := abacus.EventFilter{TenantID: q.TenantID, Customer: q.Customer, Type: a.m.EventType, From: q.From, To: q.To, KnownBy: known}
	err = s.ScanEvents(ctx, f, func(e *abacus.Event) error {
		_, err := roll.AddEvent(m, e)
		return err
	})
	if err != nil {
		return err
	}
	for _, d := range roll.Deltas {
		if a.m.Aggregation == abacus.AggUniqueCount {
			err = a.addCount(d)
		} else {
			err = a.add(d)
		}
		if err != nil {
			return err
		}
	}
	for u := range roll.Uniques {
		if err := a.addUnique(&u); err != nil {
			return err
		}
	}
	return nil
}

type cellKey struct {
	window   int
	customer string
	group    string // projected group, canonical JSON
}

type cell struct {
	d       abacus.RollupDelta
	uniques map[string]struct{}
}

type accumulator struct {
	m       *abacus.Meter
	q       Query
	ws      []window
	starts  []int64 // window start minute
	cells   map[cellKey]*cell
	groups  map[string]projected // stored group → projection
	byCust  bool
	groupBy []string // meter dimensions to keep, sorted
}

type projected struct {
	key  string
	keep bool
}

func newAccumulator(m *abacus.Meter, q Query, ws []window) *accumulator {
	a := &accumulator{m: m, q: q, ws: ws, cells: map[cellKey]*cell{}, groups: map[string]projected{}}
	for _, w := range ws {
		a.starts = append(a.starts, w.start.Unix()/60)
	}
	for _, d := range q.GroupBy {
		if d == abacus.ReservedDimension {
			a.byCust = true
		} else if !slices.Contains(a.groupBy, d) {
			a.groupBy = append(a.groupBy, d)
		}
	}
	slices.Sort(a.groupBy)
	return a
}

// windowOf returns the index of the window holding minute.
func (a *accumulator) windowOf(minute int64) int {
	i, found := slices.BinarySearch(a.starts, minute)
	if !found {
		i--
	}
	return i
}

// project maps a stored group key to the queried dimensions, applying the
// dimension filter.
func (a *accumulator) project(customer, stored string) (projected, bool) {
	if vs, ok := a.q.Filter[abacus.ReservedDimension]; ok && !slices.Contains(vs, customer) {
		return projected{}, false
	}
	if p, ok := a.groups[stored]; ok {
		return p, p.keep
	}
	var dims map[string]*string
	_ = json.Unmarshal([]byte(stored), &dims)
	p := projected{keep: true}
	for d, vs := range a.q.Filter {
		if d == abacus.ReservedDimension {
			continue
		}
		v := dims[d]
		if v == nil || !slices.Contains(vs, *v) {
			p.keep = false
		}
	}
	out := make(map[string]*string, len(a.groupBy))
	for _, d := range a.groupBy {
		out[d] = dims[d]
	}
	b, _ := json.Marshal(out)
	p.key = string(b)
	a.groups[stored] = p
	return p, p.keep
}

func (a *accumulator) cell(customer string, minute int64, group string) *cell {
	p, ok := a.project(customer, group)
	if !ok {
		return nil
	}
	k := cellKey{window: a.windowOf(minute), group: p.key}
	if a.byCust {
		k.customer = customer
	}
	c := a.cells[k]
	if c == nil {
		c = &cell{}
		a.cells[k] = c
	}
	return c
}

func (a *accumulator) add(r *abacus.RollupRow) error {
	if c := a.cell(r.Customer, r.Minute, r.Group); c != nil {
		return c.d.Merge(r)
	}
	return nil
}

func (a *accumulator) addCount(r *abacus.RollupRow) error {
	if c := a.cell(r.Customer, r.Minute, r.Group); c != nil {
		c.d.Count += r.Count
	}
	return nil
}

func (a *accumulator) addUnique(u *abacus.UniqueValue) error {
	if c := a.cell(u.Customer, u.Minute, u.Group); c != nil {
		if c.uniques == nil {
			c.uniques = map[string]struct{}{}
		}
		c.uniques[u.Value] = struct{}{}
	}
	return nil
}

func (a *accumulator) rows() ([]Row, error) {
	keys := make([]cellKey, 0, len(a.cells))
	for k := range a.cells {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y cellKey) int {
		if x.window != y.window {
			return x.window - y.window
		}
		if c := strings.Compare(x.customer, y.customer); c != 0 {
			return c
		}
		return strings.Compare(x.group, y.group)
	})
	rows := make([]Row, 0, len(keys))
	for _, k := range keys {
		c := a.cells[k]
		r := Row{WindowStart: a.ws[k.window].start.UTC(), WindowEnd: a.ws[k.window].end.UTC(), Customer: k.customer, Count: c.d.Count}
		if len(a.groupBy) > 0 {
			var dims map[string]*string
			_ = json.Unmarshal([]byte(k.group), &dims)
			r.Group = map[string]string{}
			for d, v := range dims {
				if v != nil {
					r.Group[d] = *v
				}
			}
		}
		v, err := a.value(c)
		if err != nil {
			return nil, err
		}
		r.Value = v
		rows = append(rows, r)
	}
	return rows, nil
}

func text(d *apd.Decimal) *string {
	var r apd.Decimal
	r.Reduce(d)
	s := r.Text('f')
	return &s
}

func (a *accumulator) value(c *cell) (*string, error) {
	d := &c.d
	switch a.m.Aggregation {
	case abacus.AggCount:
		s := fmt.Sprint(d.Count)
		return &s, nil
	case abacus.AggUniqueCount:
		s := fmt.Sprint(len(c.uniques))
		return &s, nil
	}
	if !d.HasValue {
		if a.m.Aggregation == abacus.AggSum {
			s := "0"
			return &s, nil
		}
		return nil, nil
	}
	switch a.m.Aggregation {
	case abacus.AggSum:
		return text(&d.Sum), nil
	case abacus.AggMin:
		return text(&d.Min), nil
	case abacus.AggMax:
		return text(&d.Max), nil
	case abacus.AggLatest:
		return text(&d.Latest), nil
	case abacus.AggAvg:
		ctx := apd.BaseContext.WithPrecision(80)
		ctx.Rounding = apd.RoundHalfEven
		var q apd.Decimal
		if _, err := ctx.Quo(&q, &d.Sum, apd.New(d.Count, 0)); err != nil {
			return nil, err
		}
		if _, err := ctx.Quantize(&q, &q, -AvgScale); err != nil {
			return nil, err
		}
		return text(&q), nil
	}
	return nil, fmt.Errorf("unknown aggregation %q", a.m.Aggregation)
}
