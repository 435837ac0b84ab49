package aggregate

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/jsonenc"
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

func (c *meterCache) get(ctx context.Context, tx abacus.ApplyTx) (map[[2]string][]*Meter, int64, error) {
	v, err := tx.MetersVersion(ctx)
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v == c.version {
		return c.byType, v, nil
	}
	all, err := tx.AllMeters(ctx)
	if err != nil {
		return nil, 0, err
	}
	byType := map[[2]string][]*Meter{}
	for _, m := range all {
		cm, err := CompileMeter(m)
		if err != nil {
			return nil, 0, fmt.Errorf("meter %s/%s: %w", m.TenantID, m.Key, err)
		}
		k := [2]string{m.TenantID, m.EventType}
		byType[k] = append(byType[k], cm)
	}
	c.version, c.byType = v, byType
	return byType, v, nil
}

// last returns the meters last loaded and their version (-1: none yet),
// for evaluating events ahead of their transaction, which checks the
// version.
func (c *meterCache) last() (map[[2]string][]*Meter, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byType, c.version
}

type eventKey struct{ tenant, id string }

// batch is the log messages of one apply transaction, decoded and evaluated
// ahead of it: the gathering goroutine fills the next batch while the
// previous one's transaction runs, so decoding, hashing and meter
// evaluation (about a quarter of the aggregator's CPU) run on the other
// core instead of in the single writer's critical path.
type batch struct {
	msgs []abacus.LogMessage
	n    int // events in msgs, from their headers
	size int // bytes of msgs
	// uniq holds the first occurrence of each id in the batch, in log
	// order; repeats the later occurrences of an id seen earlier in it.
	uniq    []abacus.AppliedEvent
	repeats []inBatch
	first   map[eventKey]int
	// contribs[i] is what uniq[i] contributes under the meters of version
	// metersVersion; metersVersion is -1 when the events were not
	// evaluated (no meters loaded yet, or the meters changed while the
	// batch was gathered) and the transaction evaluates them itself.
	contribs      [][]contribution
	metersVersion int64
	// rows are the rollup rows the contributions add to, each once;
	// rowIndex finds a row's index in rows. Gathering sets each
	// contribution's row (indexRows), so that the transaction adds to
	// rows by index: hashing every contribution's key there was two
	// thirds of adding up a batch's rollups, on the single writer's time.
	rows     []abacus.RollupKey
	rowIndex map[abacus.RollupKey]int32
	// lists holds each distinct counted list's JSON once (evaluate); buf
	// is its encoding scratch.
	lists     map[string]string
	buf       []byte
	positions map[int]uint64
	scratch   []abacus.Event
	small     int // batches in a row much smaller than the arrays (reset)
}

// shrinkAfter is how many small batches in a row make reset give up the
// batch's arrays.
const shrinkAfter = 16

type inBatch struct {
	first int
	ev    abacus.AppliedEvent
}

func newBatch() *batch {
	return &batch{first: map[eventKey]int{}, positions: map[int]uint64{}, rowIndex: map[abacus.RollupKey]int32{},
		lists: map[string]string{}, metersVersion: -1}
}

// add decodes log message m into the batch and evaluates its new events
// under meters (version v; -1: none loaded). A corrupt message can never
// apply; refusing it forever would stop the partition, so it is logged
// loudly and skipped (its position still counts).
func (b *batch) add(m abacus.LogMessage, meters map[[2]string][]*Meter, v int64, a *Aggregator) {
	if len(b.msgs) == 0 {
		b.metersVersion = v
	} else if v != b.metersVersion {
		b.metersVersion = -1
	}
	b.msgs = append(b.msgs, m)
	b.n += messageEvents(m.Data)
	b.size += len(m.Data)
	b.positions[m.Partition] = max(b.positions[m.Partition], m.Sequence)
	var err error
	if b.scratch, err = abacus.DecodeMessage(m.Data, b.scratch[:0]); err != nil {
		a.cfg.Logger.Error("skipping corrupt log message", "partition", m.Partition, "seq", m.Sequence, "err", err)
		a.cfg.Metrics.CorruptMessages.Inc()
		b.scratch = b.scratch[:0]
	}
	for i := range b.scratch {
		ae := abacus.AppliedEvent{Event: b.scratch[i], Partition: m.Partition, Sequence: m.Sequence}
		ae.Hash = ae.PayloadHash()
		k := eventKey{ae.TenantID, ae.ID}
		if j, seen := b.first[k]; seen {
			b.repeats = append(b.repeats, inBatch{first: j, ev: ae})
			continue
		}
		b.first[k] = len(b.uniq)
		b.uniq = append(b.uniq, ae)
		b.contribs = append(b.contribs, nil)
		if b.metersVersion >= 0 {
			b.evaluate(meters, len(b.uniq)-1)
		}
	}
	clear(b.scratch)
}

// evaluate evaluates uniq[i] under meters: its contributions, its counted
// list's JSON and its contributions' rows. Events whose lists are equal
// get one string (up to maxLists distinct lists a batch), so the store
// tells them apart by a string comparison that stops at the pointer.
func (b *batch) evaluate(meters map[[2]string][]*Meter, i int) {
	e := &b.uniq[i]
	b.contribs[i] = evaluateEvent(meters, e)
	b.buf = jsonenc.Counted(b.buf[:0], e.Counted)
	list, ok := b.lists[string(b.buf)] // no allocation for a lookup
	if !ok {
		list = string(b.buf)
		if len(b.lists) < maxLists {
			b.lists[list] = list
		}
	}
	e.CountedJSON = list
	b.indexRows(i)
}

// maxLists bounds the distinct counted lists a batch shares strings for:
// a meter grouped by a value that differs per event gives each event a
// list of its own, which sharing would only index. A batch holds its
// events' lists until reset (~100 B an event when each has its own),
// where the store used to hold them only while inserting.
const maxLists = 4096

// maxListBuf is the largest encoding scratch a batch keeps across resets.
const maxListBuf = 64 << 10

// indexRows sets the row of each contribution of uniq[i], adding rows
// not seen yet.
func (b *batch) indexRows(i int) {
	e := &b.uniq[i].Event
	for j := range b.contribs[i] {
		c := &b.contribs[i][j]
		k := rowOf(e, c)
		r, ok := b.rowIndex[k]
		if !ok {
			r = int32(len(b.rows))
			b.rowIndex[k] = r
			b.rows = append(b.rows, k)
		}
		c.row = r
	}
}

// rollups adds up the contributions of the events stored (uniq[i] for
// each i with inserted[i]) into one delta per row, and the distinct values
// of unique_count meters into roll.Uniques. The deltas are new on every
// call (a retried transaction calls it again), and not kept: ~300 B a
// row, and a batch of backdated events has about a row per contribution.
func (b *batch) rollups(inserted func(i int) bool, roll *Rollup) ([]abacus.RollupDelta, error) {
	ds := make([]abacus.RollupDelta, len(b.rows))
	for i := range b.uniq {
		if !inserted(i) {
			continue
		}
		for j := range b.contribs[i] {
			c := &b.contribs[i][j]
			d := &ds[c.row]
			if d.Count == 0 {
				d.RollupKey = b.rows[c.row]
			}
			if err := roll.addTo(d, &b.uniq[i].Event, c); err != nil {
				return nil, err
			}
		}
	}
	// Only rows an inserted event added to, in row order.
	out := ds[:0]
	for k := range ds {
		if ds[k].Count > 0 {
			out = append(out, ds[k])
		}
	}
	return out, nil
}

// reset empties the batch for reuse. It keeps the arrays (growing a
// 100k-event slice of events anew for every transaction was 6% of the
// aggregator's CPU) until shrinkAfter batches in a row were much smaller
// than they are, and drops every reference into log messages and their
// decoding arenas, so that an idle aggregator holds no events. Dropping the
// arrays after a single small batch, as reset once did, gave them up
// whenever batch sizes swung under load: growing them again was the
// largest allocation of the aggregator under abacus bench.
func (b *batch) reset() {
	if cap(b.uniq) > 4*len(b.uniq)+1024 {
		b.small++
	} else {
		b.small = 0
	}
	if b.small >= shrinkAfter {
		b.uniq, b.contribs, b.repeats, b.rows = nil, nil, nil, nil
		b.first = map[eventKey]int{}
		b.rowIndex = map[abacus.RollupKey]int32{}
		b.lists = map[string]string{}
		b.small = 0
	}
	clear(b.msgs)
	clear(b.uniq)
	clear(b.contribs)
	clear(b.repeats)
	clear(b.first)
	clear(b.positions)
	clear(b.rows)
	clear(b.rowIndex)
	clear(b.lists)
	if cap(b.buf) > maxListBuf {
		b.buf = nil // one very long list does not keep its buffer in every batch
	}
	b.rows = b.rows[:0]
	b.msgs, b.uniq, b.contribs, b.repeats = b.msgs[:0], b.uniq[:0], b.contribs[:0], b.repeats[:0]
	b.n, b.size, b.metersVersion = 0, 0, -1
}

// apply commits one batch.
func (a *Aggregator) apply(ctx context.Context, b *batch) error {
	uniq := b.uniq
	var newCount, dupCount, conflictCount int
	err := a.cfg.Store.Apply(ctx, func(tx abacus.ApplyTx) error {
		newCount, dupCount, conflictCount = 0, 0, 0
		// First: the stamp takes the knowledge lock before anything else
		// (abacus.ApplyTx.Stamp), and every event this transaction inserts
		// is known from it on.
		if _, err := tx.Stamp(ctx, a.cfg.Clock.Now); err != nil {
			return err
		}
		meters, version, err := a.meters.get(ctx, tx)
		if err != nil {
			return err
		}
		// An event applied after a meter's creation committed is always
		// evaluated against it: a batch evaluated under other meters is
		// evaluated again.
		if b.metersVersion != version {
			clear(b.rowIndex)
			clear(b.lists) // every event's list is encoded again
			clear(b.rows)
			b.rows = b.rows[:0]
			for i := range uniq {
				b.evaluate(meters, i)
			}
			b.metersVersion = version
		}
		results, err := tx.InsertEvents(ctx, uniq)
		if err != nil {
			return err
		}
		var repeats []abacus.Repeat
		for i, r := range results {
			if !r.Inserted {
				repeats = append(repeats, repeat(&uniq[i], r.ExistingHash))
				continue
			}
			newCount++
		}
		roll := &Rollup{Uniques: map[abacus.UniqueValue]struct{}{}} // its deltas are batch.rollups'
		deltas, err := b.rollups(func(i int) bool { return results[i].Inserted }, roll)
		if err != nil {
			return err
		}
		for _, rb := range b.repeats {
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
		if err := tx.AddRollups(ctx, deltas); err != nil {
			return err
		}
		if err := tx.AddUniques(ctx, roll.uniqueList()); err != nil {
			return err
		}
		for p, s := range b.positions {
			if err := tx.SetPosition(ctx, p, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	m := a.cfg.Metrics
	m.EventsApplied.Add(float64(newCount))
	m.Duplicates.Add(float64(dupCount))
	m.Conflicts.Add(float64(conflictCount))
	for p, s := range b.positions {
		m.Position.WithLabelValues(strconv.Itoa(p)).Set(float64(s))
	}
	a.setError(nil)
	a.Commit(b.positions)
	return nil
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
			if e.Counted == nil {
				e.Counted = make([]abacus.Counted, 0, len(ms))
			}
			e.Counted = append(e.Counted, abacus.Counted{Meter: m.Key, Group: c.group})
		case reason != "":
			e.Skipped = append(e.Skipped, abacus.Skipped{Meter: m.Key, Reason: reason})
		}
	}
	return out
}
