package aggregate

import (
	"github.com/abacus-billing/abacus"
)

// Rollup collects what events add to the rollups: per-minute rollup deltas
// and distinct values (unique_count). The aggregator fills one per apply
// transaction from the new events of a batch and adds it to the store; an
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
	return true, r.add(e, &c)
}

// add adds contribution c of event e: one count (and value) in the rollup
// row of e's minute and group, or one distinct value for unique_count.
func (r *Rollup) add(e *abacus.Event, c *contribution) error {
	k := abacus.RollupKey{TenantID: e.TenantID, Meter: c.meter.Key, Customer: e.Customer, Group: c.group, Minute: abacus.MinuteOf(e.Time)}
	d := abacus.RollupDelta{RollupKey: k, Count: 1}
	switch c.meter.Aggregation {
	case abacus.AggCount:
	case abacus.AggUniqueCount:
		r.Uniques[abacus.UniqueValue{RollupKey: k, Value: c.unique}] = struct{}{}
	default:
		d.HasValue = true
		d.Sum.Set(&c.value)
		d.Min.Set(&c.value)
		d.Max.Set(&c.value)
		d.Latest.Set(&c.value)
		d.LatestTime, d.LatestID = e.Time.UnixNano(), e.ID
	}
	if cur, ok := r.Deltas[k]; ok {
		return cur.Merge(&d)
	}
	r.Deltas[k] = &d
	return nil
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
