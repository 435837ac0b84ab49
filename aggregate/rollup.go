package aggregate

import (
	"github.com/abacus-billing/abacus"
)

// Rollup collects what events add to the rollups: per-minute rollup deltas
// and distinct values (unique_count). An as-of usage read (usage.Query
// AsOf) fills one from the stored raw events known at an instant and reads
// it as it would read the stored rollups. The aggregator adds the new
// events of a batch to deltas it finds by index instead (batch.rollups),
// and their distinct values to a Rollup's Uniques. Both go through the
// same evaluation (Meter) and the same addTo, so the two answers cannot
// drift apart.
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

// add adds contribution c of event e to the delta of its row.
func (r *Rollup) add(e *abacus.Event, c *contribution) error {
	k := rowOf(e, c)
	d, ok := r.Deltas[k]
	if !ok {
		d = &abacus.RollupDelta{RollupKey: k}
		r.Deltas[k] = d
	}
	return r.addTo(d, e, c)
}

// rowOf is the rollup row contribution c of event e adds to: its meter,
// customer, group and minute.
func rowOf(e *abacus.Event, c *contribution) abacus.RollupKey {
	return abacus.RollupKey{TenantID: e.TenantID, Meter: c.meter.Key, Customer: e.Customer, Group: c.group, Minute: abacus.MinuteOf(e.Time)}
}

// addTo adds contribution c of event e to d, the delta of rowOf(e, c):
// one count (and value) in the row, or one distinct value for
// unique_count. The aggregator finds d by an index it built while
// gathering (batch.indexRows), Rollup.add by the row's key.
func (r *Rollup) addTo(d *abacus.RollupDelta, e *abacus.Event, c *contribution) error {
	one := abacus.RollupDelta{Count: 1}
	switch c.meter.Aggregation {
	case abacus.AggCount:
	case abacus.AggUniqueCount:
		r.Uniques[abacus.UniqueValue{RollupKey: d.RollupKey, Value: c.unique}] = struct{}{}
	default:
		one.HasValue = true
		one.Sum.Set(&c.value)
		one.Min.Set(&c.value)
		one.Max.Set(&c.value)
		one.Latest.Set(&c.value)
		one.LatestTime, one.LatestID = e.Time.UnixNano(), e.ID
	}
	return d.Merge(&one)
}

func (r *Rollup) uniqueList() []abacus.UniqueValue {
	out := make([]abacus.UniqueValue, 0, len(r.Uniques))
	for u := range r.Uniques {
		out = append(out, u)
	}
	return out
}
