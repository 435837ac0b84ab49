package aggregate

import (
	"github.com/abacus-billing/abacus"
)

// Rollup collects what events add to the rollups: per-minute rollup deltas
// and distinct values (unique_count). The aggregator fills one per batch as
// it gathers it, and one per transaction for the rows and distinct values
// that depend on which events were stored (batch.rollups); an
// as-of usage read (usage.Query AsOf) fills one from the stored raw events
// known at an instant and reads it as it would read the stored rollups.
// Both go through the same evaluation (Meter) and the same add, so the two
// answers cannot drift apart.
type Rollup struct {
	Deltas  map[abacus.RollupKey]*abacus.RollupDelta
	Uniques map[abacus.UniqueValue]struct{}
}

// NewRollup returns an empty Rollup.
func NewRollup() *Rollup {
	return &Rollup{Deltas: map[abacus.RollupKey]*abacus.RollupDelta{}, Uniques: map[abacus.UniqueValue]struct{}{}}
}

// AddEvent evaluates m on e and adds what e contributes to m, if it counts
// in m (m's tenant and event type, filters passed, a valid value). It
// reports whether e counted. e is not kept.
func (r *Rollup) AddEvent(m *Meter, e *abacus.Event) (bool, error) {
	if e.TenantID != m.TenantID || e.Type != m.EventType {
		return false, nil
	}
	props, err := decodeProperties(e.Properties)
	if err != nil {
		return false, nil // the aggregator records it as skipped
	}
	var c contribution
	if ok, _ := m.evaluate(props, &c); !ok {
		return false, nil
	}
	_, err = r.add(e, &c)
	return true, err
}

// add adds contribution c of event e: one count (and value) in the rollup
// row of e's minute and group, which it returns, and for unique_count one
// distinct value.
func (r *Rollup) add(e *abacus.Event, c *contribution) (*abacus.RollupDelta, error) {
	if c.meter.Aggregation == abacus.AggUniqueCount {
		r.addUnique(e, c)
	}
	return r.merge(e, c)
}

func rollupKey(e *abacus.Event, c *contribution) abacus.RollupKey {
	return abacus.RollupKey{TenantID: e.TenantID, Meter: c.meter.Key, Customer: e.Customer, Group: c.group, Minute: abacus.MinuteOf(e.Time)}
}

// addUnique adds c's distinct value (unique_count).
func (r *Rollup) addUnique(e *abacus.Event, c *contribution) {
	r.Uniques[abacus.UniqueValue{RollupKey: rollupKey(e, c), Value: c.unique}] = struct{}{}
}

// merge adds c's count (and value) to the rollup row of e's minute and
// group, and returns the row.
func (r *Rollup) merge(e *abacus.Event, c *contribution) (*abacus.RollupDelta, error) {
	k := rollupKey(e, c)
	d := abacus.RollupDelta{RollupKey: k, Count: 1}
	switch c.meter.Aggregation {
	case abacus.AggCount, abacus.AggUniqueCount:
	default:
		d.HasValue = true
		d.Sum.Set(&c.value)
		d.Min.Set(&c.value)
		d.Max.Set(&c.value)
		d.Latest.Set(&c.value)
		d.LatestTime, d.LatestID = e.Time.UnixNano(), e.ID
	}
	if cur, ok := r.Deltas[k]; ok {
		return cur, cur.Merge(&d)
	}
	r.Deltas[k] = &d
	return &d, nil
}

func (r *Rollup) deltaList() []abacus.RollupDelta {
	out := make([]abacus.RollupDelta, 0, len(r.Deltas))
	for _, d := range r.Deltas {
		out = append(out, *d)
	}
	return out
}

func (r *Rollup) uniqueList() []abacus.UniqueValue {
	out := make([]abacus.UniqueValue, 0, len(r.Uniques))
	for u := range r.Uniques {
		out = append(out, u)
	}
	return out
}
