package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/countedsets"
	"github.com/abacus-billing/abacus/internal/jsonenc"
	"github.com/jackc/pgx/v5"
)

// Apply runs fn in one transaction and commits it if fn returns nil; an
// error from fn rolls everything back and is returned as is.
func (s *Store) Apply(ctx context.Context, fn func(abacus.ApplyTx) error) error {
	return s.tx(ctx, func(tx pgx.Tx) error { return fn(&applyTx{tx: tx, store: s}) })
}

// Positions returns the last applied sequence of each partition.
func (s *Store) Positions(ctx context.Context) (map[int]uint64, error) {
	return s.positions(ctx, "log_positions")
}

// positions reads a table of log positions (log_partition, seq): the
// usage aggregator's or the subscription consumer's.
func (s *Store) positions(ctx context.Context, table string) (map[int]uint64, error) {
	rows, err := s.pool.Query(ctx, `SELECT log_partition, seq FROM `+table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]uint64{}
	for rows.Next() {
		var p int32
		var seq int64
		if err := rows.Scan(&p, &seq); err != nil {
			return nil, err
		}
		out[int(p)] = uint64(seq)
	}
	return out, rows.Err()
}

// applyTx is the write side of one Apply.
//
// Bulk writes send each column as one array parameter and unnest it in the
// server: one statement and one round trip per call whatever the batch
// size, with no per-row statements and no parameter limit. Rows are sent in
// key order so that concurrent Applys touching the same keys lock them in
// the same order and queue instead of deadlocking.
//
// The alternative, COPY into a temporary table followed by INSERT ... SELECT,
// costs three round trips (create, copy, insert) and measured slower for
// batches of 1000 events: about 9.5 ms per committed batch with unnest
// against 11 ms with COPY (BenchmarkInsertEvents, PostgreSQL 15 on
// localhost). At 25,000 events, the batch of a saturated applier, COPY was
// even or slightly ahead (three runs each: 13.7-15.1 µs per event with
// unnest, 13.0-16.6 with COPY; six more, later: medians 10.4 and 9.6, ranges
// overlapping): the cost is the server's insert, not how the rows travel.
type applyTx struct {
	tx    pgx.Tx
	store *Store // for counted lists, added outside tx (countedLists)
	stamp stamp
}

func (t *applyTx) MetersVersion(ctx context.Context) (int64, error) {
	var v int64
	err := t.tx.QueryRow(ctx, `SELECT value FROM counters WHERE name = 'meters_version'`).Scan(&v)
	return v, err
}

func (t *applyTx) AllMeters(ctx context.Context) ([]*abacus.Meter, error) {
	return queryMeters(ctx, t.tx, `SELECT `+meterColumns+` FROM meters ORDER BY tenant_id, key`)
}

const eventColumns = `tenant_id, id, type, customer_id, time, time_given, ingest_time, properties, hash, log_partition, log_seq, counted, skipped`

// storedEventColumns reads eventColumns back, the counted list from
// counted_sets where the row names one (migration 0006).
const storedEventColumns = `tenant_id, id, type, customer_id, time, time_given, ingest_time, properties, hash, log_partition, log_seq, ` +
	countedsets.Column + `, skipped`

// insertEventsSQL stores the events that are new and, in the same
// statement, lists them in event blocks: one row per tenant, customer and
// minute of event time (migration 0005; docs/ARCHITECTURE.md, "Event
// blocks"). It returns the keys of the events it stored.
const insertEventsSQL = `WITH ins AS (
INSERT INTO events(` + eventColumns + `, counted_set, applied_at)
SELECT u.*, $14::int8 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::bool[], $7::int8[],
	$8::text[], $9::bytea[], $10::int4[], $11::int8[], $12::text[], $13::text[], $15::int8[]) AS u
ON CONFLICT (tenant_id, id) DO NOTHING
RETURNING tenant_id, id, customer_id, time
), blocks AS (
INSERT INTO event_blocks(tenant_id, customer_id, minute, applied_at, first_id, ids)
SELECT tenant_id, customer_id, CASE WHEN time >= 0 THEN time / 60000000000 ELSE (time + 1) / 60000000000 - 1 END,
	$14::int8, min(id), array_agg(id ORDER BY id)
FROM ins GROUP BY 1, 2, 3
)
SELECT tenant_id, id FROM ins`

// storedHashesSQL reads the hashes of the events that were not inserted. It
// is a second statement, run only when some event was a repeat: in the
// INSERT's own snapshot a row committed concurrently by another transaction
// would be invisible even though it blocked the insert.
const storedHashesSQL = `SELECT e.tenant_id, e.id, e.hash FROM events e
JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, id) ON e.tenant_id = k.tenant_id AND e.id = k.id`

type eventKey struct{ tenant, id string }

// sortedOrder returns the indexes 0..n-1 ordered by less.
func sortedOrder(n int, less func(i, j int) int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, less)
	return order
}

func (t *applyTx) InsertEvents(ctx context.Context, events []abacus.AppliedEvent) ([]abacus.InsertResult, error) {
	if t.stamp.at.IsZero() {
		return nil, errNotStamped
	}
	results := make([]abacus.InsertResult, len(events))
	if len(events) == 0 {
		return results, nil
	}
	lists, err := t.store.countedLists(ctx, events)
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	n := len(events)
	var (
		tenants, ids, types, customers = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		times, ingest, seqs, sets      = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		given                          = make([]bool, n)
		props, counted, skipped        = make([]string, n), make([]string, n), make([]string, n)
		hashes                         = make([][]byte, n)
		parts                          = make([]int32, n)
	)
	order := sortedOrder(n, func(i, j int) int {
		return cmp.Or(cmp.Compare(events[i].TenantID, events[j].TenantID), cmp.Compare(events[i].ID, events[j].ID))
	})
	var buf []byte
	for k, i := range order {
		e := &events[i]
		tenants[k], ids[k], types[k], customers[k] = e.TenantID, e.ID, e.Type, e.Customer
		times[k], given[k], ingest[k] = e.Time.UnixNano(), e.TimeGiven, e.IngestTime.UnixNano()
		props[k], hashes[k], parts[k], seqs[k] = string(e.Properties), e.Hash[:], int32(e.Partition), int64(e.Sequence)
		counted[k], sets[k] = lists.Row(i)
		skipped[k], buf = jsonenc.SkippedText(buf, e.Skipped)
	}
	inserted := make(map[eventKey]bool, n)
	err = t.exec(ctx, insertEventsSQL, [][]byte{textArray(tenants), textArray(ids), textArray(types), textArray(customers),
		int8Array(times), boolArray(given), int8Array(ingest), textArray(props), byteaArray(hashes), int4Array(parts),
		int8Array(seqs), textArray(counted), textArray(skipped), int8Param(ns(t.stamp.at)), int8Array(sets)}, func(cols [][]byte) error {
		inserted[eventKey{string(cols[0]), string(cols[1])}] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	if len(inserted) == n {
		for i := range results {
			results[i].Inserted = true
		}
		return results, nil
	}
	var mt, mi []string
	for i := range events {
		if !inserted[eventKey{events[i].TenantID, events[i].ID}] {
			mt, mi = append(mt, events[i].TenantID), append(mi, events[i].ID)
		}
	}
	stored := make(map[eventKey][]byte, len(mt))
	var k eventKey
	var h []byte
	rows, err := t.tx.Query(ctx, storedHashesSQL, mt, mi)
	if err != nil {
		return nil, fmt.Errorf("read stored events: %w", err)
	}
	_, err = pgx.ForEachRow(rows, []any{&k.tenant, &k.id, &h}, func() error {
		stored[k] = slices.Clone(h)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stored events: %w", err)
	}
	for i := range events {
		key := eventKey{events[i].TenantID, events[i].ID}
		if inserted[key] {
			results[i].Inserted = true
			continue
		}
		h, ok := stored[key]
		if !ok {
			return nil, fmt.Errorf("event %q was neither inserted nor found", events[i].ID)
		}
		copy(results[i].ExistingHash[:], h)
	}
	return results, nil
}

// recordRepeatsSQL counts every repeat as a duplicate of the stored event
// (grouped first: UPDATE ... FROM applies one joined row per target row) and
// keeps the conflicting ones, in one statement.
const recordRepeatsSQL = `WITH r AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::bytea[], $5::int4[], $6::int8[], $7::int8[])
		AS r(tenant_id, event_id, conflict, hash, log_partition, log_seq, seen_at)
), dup AS (
	UPDATE events e SET duplicates = e.duplicates + n.n
	FROM (SELECT tenant_id, event_id, count(*) AS n FROM r GROUP BY tenant_id, event_id) n
	WHERE e.tenant_id = n.tenant_id AND e.id = n.event_id
)
INSERT INTO event_conflicts(tenant_id, event_id, hash, log_partition, log_seq, seen_at)
SELECT tenant_id, event_id, hash, log_partition, log_seq, seen_at FROM r WHERE conflict`

func (t *applyTx) RecordRepeats(ctx context.Context, repeats []abacus.Repeat) error {
	if len(repeats) == 0 {
		return nil
	}
	n := len(repeats)
	tenants, ids, conflict := make([]string, n), make([]string, n), make([]bool, n)
	hashes, parts, seqs, seen := make([][]byte, n), make([]int32, n), make([]int64, n), make([]int64, n)
	for i := range repeats {
		r := &repeats[i]
		tenants[i], ids[i], conflict[i] = r.TenantID, r.EventID, r.Conflict
		hashes[i], parts[i], seqs[i], seen[i] = r.Hash[:], int32(r.Partition), int64(r.Sequence), r.SeenAt.UnixNano()
	}
	if err := t.exec(ctx, recordRepeatsSQL, [][]byte{textArray(tenants), textArray(ids), boolArray(conflict), byteaArray(hashes),
		int4Array(parts), int8Array(seqs), int8Array(seen)}, nil); err != nil {
		return fmt.Errorf("record repeats: %w", err)
	}
	return nil
}

// addRollupsSQL merges deltas into rollups exactly, in NUMERIC, with the
// semantics of abacus.RollupDelta.Merge: counts add; a delta without a value
// changes nothing else; a row without a value yet takes the delta's values;
// otherwise sums add, min and max widen and latest follows the greater
// (latest_time, latest_id). Every SET expression sees the row as it was
// before the update. On ties LEAST and GREATEST return their first argument,
// the stored value, as Merge keeps it. latest_id has collation "C", so the
// row comparison is bytewise like Go's.
const addRollupsSQL = `INSERT INTO rollups AS r (tenant_id, meter, customer_id, minute, grp, count, has_value, sum, min, max, latest, latest_time, latest_id)
SELECT t, m, c, mi, g, n, h, s::numeric, lo::numeric, hi::numeric, l::numeric, lt, li
FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[], $7::bool[],
	$8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::text[]) AS u(t, m, c, mi, g, n, h, s, lo, hi, l, lt, li)
ON CONFLICT (tenant_id, meter, customer_id, minute, grp) DO UPDATE SET
	count = r.count + excluded.count,
	has_value = r.has_value OR excluded.has_value,
	sum = CASE WHEN NOT excluded.has_value THEN r.sum WHEN NOT r.has_value THEN excluded.sum ELSE r.sum + excluded.sum END,
	min = CASE WHEN NOT excluded.has_value THEN r.min WHEN NOT r.has_value THEN excluded.min ELSE LEAST(r.min, excluded.min) END,
	max = CASE WHEN NOT excluded.has_value THEN r.max WHEN NOT r.has_value THEN excluded.max ELSE GREATEST(r.max, excluded.max) END,
	latest = CASE WHEN ` + newerLatest + ` THEN excluded.latest ELSE r.latest END,
	latest_time = CASE WHEN ` + newerLatest + ` THEN excluded.latest_time ELSE r.latest_time END,
	latest_id = CASE WHEN ` + newerLatest + ` THEN excluded.latest_id ELSE r.latest_id END`

const newerLatest = `excluded.has_value AND (NOT r.has_value OR (excluded.latest_time, excluded.latest_id) > (r.latest_time, r.latest_id))`

// AddRollups merges deltas into stored rows in one statement. Decimals
// travel as text (exact, whatever their size) and are cast to NUMERIC.
func (t *applyTx) AddRollups(ctx context.Context, deltas []abacus.RollupDelta) error {
	if len(deltas) == 0 {
		return nil
	}
	n := len(deltas)
	var (
		tenants, meters, customers, groups, latestIDs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		minutes, counts, latestTimes                  = make([]int64, n), make([]int64, n), make([]int64, n)
		has                                           = make([]bool, n)
		sums, mins, maxs, latests                     = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	)
	order := sortedOrder(n, func(i, j int) int { return deltas[i].RollupKey.Compare(&deltas[j].RollupKey) })
	for k, i := range order {
		d := &deltas[i]
		tenants[k], meters[k], customers[k], minutes[k], groups[k] = d.TenantID, d.Meter, d.Customer, d.Minute, d.Group
		counts[k], has[k] = d.Count, d.HasValue
		if d.HasValue {
			sums[k], mins[k], maxs[k], latests[k] = d.Sum.Text('f'), d.Min.Text('f'), d.Max.Text('f'), d.Latest.Text('f')
			latestTimes[k], latestIDs[k] = d.LatestTime, d.LatestID
		} else {
			// Without a value the other fields are meaningless: store what
			// sqlite stores for a row that has none.
			sums[k], mins[k], maxs[k], latests[k] = "0", "0", "0", "0"
		}
	}
	if err := t.exec(ctx, addRollupsSQL, [][]byte{textArray(tenants), textArray(meters), textArray(customers), int8Array(minutes),
		textArray(groups), int8Array(counts), boolArray(has), textArray(sums), textArray(mins), textArray(maxs),
		textArray(latests), int8Array(latestTimes), textArray(latestIDs)}, nil); err != nil {
		return fmt.Errorf("add rollups: %w", err)
	}
	return nil
}

const addUniquesSQL = `INSERT INTO uniques(tenant_id, meter, customer_id, minute, grp, value)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[])
ON CONFLICT DO NOTHING`

// AddUniques inserts distinct values in one statement, ignoring those
// already present (also repeats within values).
func (t *applyTx) AddUniques(ctx context.Context, values []abacus.UniqueValue) error {
	if len(values) == 0 {
		return nil
	}
	n := len(values)
	tenants, meters, customers, groups, vals := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	minutes := make([]int64, n)
	order := sortedOrder(n, func(i, j int) int {
		return cmp.Or(values[i].RollupKey.Compare(&values[j].RollupKey), cmp.Compare(values[i].Value, values[j].Value))
	})
	for k, i := range order {
		u := &values[i]
		tenants[k], meters[k], customers[k], minutes[k], groups[k], vals[k] = u.TenantID, u.Meter, u.Customer, u.Minute, u.Group, u.Value
	}
	if err := t.exec(ctx, addUniquesSQL, [][]byte{textArray(tenants), textArray(meters), textArray(customers), int8Array(minutes),
		textArray(groups), textArray(vals)}, nil); err != nil {
		return fmt.Errorf("add uniques: %w", err)
	}
	return nil
}

func (t *applyTx) SetPosition(ctx context.Context, partition int, seq uint64) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO log_positions(log_partition, seq) VALUES ($1, $2)
		ON CONFLICT (log_partition) DO UPDATE SET seq = excluded.seq`, int32(partition), int64(seq))
	return err
}
