package aggregate

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"

	"github.com/abacus-billing/abacus"
)

// messageEvents reads the event count of a log message without decoding it.
func messageEvents(msg []byte) int {
	n, k := binary.Uvarint(msg)
	if k <= 0 {
		return 1
	}
	return int(n)
}

// meterCache holds every tenant's meters compiled, keyed by tenant and event
// type, and is reloaded inside the apply transaction whenever the stored
// meters version moves: an event applied after a meter's creation committed
// is always evaluated against it.
type meterCache struct {
	mu      sync.Mutex
	version int64
	byType  map[[2]string][]*Meter
}

func (c *meterCache) get(ctx context.Context, tx abacus.ApplyTx) (map[[2]string][]*Meter, error) {
	v, err := tx.MetersVersion(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v == c.version {
		return c.byType, nil
	}
	all, err := tx.AllMeters(ctx)
	if err != nil {
		return nil, err
	}
	byType := map[[2]string][]*Meter{}
	for _, m := range all {
		cm, err := CompileMeter(m)
		if err != nil {
			return nil, fmt.Errorf("meter %s/%s: %w", m.TenantID, m.Key, err)
		}
		k := [2]string{m.TenantID, m.EventType}
		byType[k] = append(byType[k], cm)
	}
	c.version, c.byType = v, byType
	return byType, nil
}

type eventKey struct{ tenant, id string }

// apply commits one batch of log messages. events is scratch space (pass it
// empty), returned holding the batch's decoded events so that the caller can
// clear them and reuse the space.
func (a *Aggregator) apply(ctx context.Context, batch []abacus.LogMessage, events []abacus.Event) ([]abacus.Event, error) {
	// Decode, and split the batch into first occurrences (in log order) and
	// repeats of an id seen earlier in the same batch.
	var uniq []abacus.AppliedEvent
	type inBatch struct {
		first int
		ev    abacus.AppliedEvent
	}
	var repeatsInBatch []inBatch
	first := map[eventKey]int{}
	positions := map[int]uint64{}
	for _, m := range batch {
		start := len(events)
		var err error
		if events, err = abacus.DecodeMessage(m.Data, events); err != nil {
			// A corrupt message can never apply; refusing it forever would
			// stop the partition, so it is logged loudly and skipped.
			a.cfg.Logger.Error("skipping corrupt log message", "partition", m.Partition, "seq", m.Sequence, "err", err)
			a.cfg.Metrics.CorruptMessages.Inc()
			events = events[:start]
		}
		for i := start; i < len(events); i++ {
			ae := abacus.AppliedEvent{Event: events[i], Partition: m.Partition, Sequence: m.Sequence}
			ae.Hash = ae.PayloadHash()
			k := eventKey{ae.TenantID, ae.ID}
			if j, seen := first[k]; seen {
				repeatsInBatch = append(repeatsInBatch, inBatch{first: j, ev: ae})
				continue
			}
			first[k] = len(uniq)
			uniq = append(uniq, ae)
		}
		positions[m.Partition] = max(positions[m.Partition], m.Sequence)
	}

	var newCount, dupCount, conflictCount int
	err := a.cfg.Store.Apply(ctx, func(tx abacus.ApplyTx) error {
		newCount, dupCount, conflictCount = 0, 0, 0
		// First: the stamp takes the knowledge lock before anything else
		// (abacus.ApplyTx.Stamp), and every event this transaction inserts
		// is known from it on.
		if _, err := tx.Stamp(ctx, a.cfg.Clock.Now); err != nil {
			return err
		}
		meters, err := a.meters.get(ctx, tx)
		if err != nil {
			return err
		}
		contribs := make([][]contribution, len(uniq))
		for i := range uniq {
			contribs[i] = evaluateEvent(meters, &uniq[i])
		}
		results, err := tx.InsertEvents(ctx, uniq)
		if err != nil {
			return err
		}
		roll := NewRollup()
		var repeats []abacus.Repeat
		for i, r := range results {
			e := &uniq[i]
			if !r.Inserted {
				repeats = append(repeats, repeat(e, r.ExistingHash))
				continue
			}
			newCount++
			for j := range contribs[i] {
				if err := roll.add(&e.Event, &contribs[i][j]); err != nil {
					return err
				}
			}
		}
		for _, rb := range repeatsInBatch {
			stored := uniq[rb.first].Hash
			if !results[rb.first].Inserted {
				stored = results[rb.first].ExistingHash
			}
			repeats = append(repeats, repeat(&rb.ev, stored))
		}
		for _, r := range repeats {
			if r.Conflict {
				conflictCount++
			} else {
				dupCount++
			}
		}
		if err := tx.RecordRepeats(ctx, repeats); err != nil {
			return err
		}
		if err := tx.AddRollups(ctx, roll.deltaList()); err != nil {
			return err
		}
		if err := tx.AddUniques(ctx, roll.uniqueList()); err != nil {
			return err
		}
		for p, s := range positions {
			if err := tx.SetPosition(ctx, p, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return events, err
	}
	m := a.cfg.Metrics
	m.EventsApplied.Add(float64(newCount))
	m.Duplicates.Add(float64(dupCount))
	m.Conflicts.Add(float64(conflictCount))
	for p, s := range positions {
		m.Position.WithLabelValues(strconv.Itoa(p)).Set(float64(s))
	}
	a.setError(nil)
	a.Commit(positions)
	return events, nil
}

func repeat(e *abacus.AppliedEvent, stored [16]byte) abacus.Repeat {
	return abacus.Repeat{TenantID: e.TenantID, EventID: e.ID, Conflict: stored != e.Hash, Hash: e.Hash,
		Partition: e.Partition, Sequence: e.Sequence, SeenAt: e.IngestTime}
}

// evaluateEvent fills e.Counted and e.Skipped and returns its contributions.
func evaluateEvent(meters map[[2]string][]*Meter, e *abacus.AppliedEvent) []contribution {
	ms := meters[[2]string{e.TenantID, e.Type}]
	e.Counted, e.Skipped = nil, nil
	if len(ms) == 0 {
		return nil // stored, counted nowhere: see docs/ARCHITECTURE.md, "Events no meter counts"
	}
	props, err := decodeProperties(e.Properties)
	if err != nil {
		for _, m := range ms {
			e.Skipped = append(e.Skipped, abacus.Skipped{Meter: m.Key, Reason: "properties are not a JSON object"})
		}
		return nil
	}
	out := make([]contribution, 0, len(ms))
	for _, m := range ms {
		var c contribution
		ok, reason := m.evaluate(props, &c)
		switch {
		case ok:
			out = append(out, c)
			e.Counted = append(e.Counted, abacus.Counted{Meter: m.Key, Group: c.group})
		case reason != "":
			e.Skipped = append(e.Skipped, abacus.Skipped{Meter: m.Key, Reason: reason})
		}
	}
	return out
}
