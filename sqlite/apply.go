package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/countedsets"
	"github.com/abacus-billing/abacus/internal/jsonenc"
	"github.com/cockroachdb/apd/v3"
)

// Apply runs fn in one write transaction. AddRollups merges into the
// rollup cache in place, so a transaction that does not commit (an error or
// a panic) drops the cache: its rows may hold merges that never committed.
// Apply calls hold the cache's lock from start to end, not only the one
// writer connection: a failed transaction's connection is free again before
// tx returns, and another Apply must not merge onto the cache before it is
// dropped.
func (s *Store) Apply(ctx context.Context, fn func(abacus.ApplyTx) error) error {
	s.rollups.mu.Lock()
	defer s.rollups.mu.Unlock()
	committed := false
	defer func() {
		if !committed {
			s.rollups.drop()
			s.counted.Drop()
		}
	}()
	t := &applyTx{cache: &s.rollups, counted: &s.counted, stmts: &s.stmts}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		t.tx = tx
		return fn(t)
	})
	committed = err == nil
	return err
}

// rollupCache holds the stored rollup rows so that merging a delta does not
// read the row back: SQLite has no exact decimal type, so merges are
// read-modify-write in Go, and the read was a quarter of the aggregator's
// time. It is correct because this Store is the only writer of rollups: one
// process owns an SQLite data dir (its embedded log is in the same dir).
//
// Rows are merged in place, inside the transaction that writes them, and
// the whole cache is dropped if that transaction fails (Apply). Failed
// transactions are rare (a full disk, a closed store), so this is cheaper
// than the alternative it replaced: copying each row into a per-transaction
// map and back into the cache after the commit was a tenth of the
// aggregator's CPU.
//
// A cached row's strings are its own, never a log message's decoding
// arena (abacus.DecodeMessage gives all strings of a message one
// allocation): a cached row holding one would pin the whole message, and at
// the end of a 6-minute `abacus bench` run that was 313 of 742 MB of live
// heap, which the GC marks on every cycle.
//
// The cache keeps the rows merged recently, in two generations: rows
// merged since the last rotation, and those of the generation before,
// which move to the young one when merged again. The young generation
// becomes old, and the old is dropped, once it is a minute old
// (rollupGenerationAge) or would pass maxCachedRollups rows, whichever
// comes first. So under steady traffic the cache holds the rows merged in
// the last one to two minutes (rollup rows are per minute of event time:
// the open minutes' rows), and never more than two generations; it only
// rotates when rows are merged, so an idle server keeps what it had.
// Rotating by age makes the cache reach its steady size within two
// minutes whatever the rate; with the row bound alone, a 10-minute run of
// `abacus bench` at 20k events/s (26,000 rows a minute) filled 100,000-row
// generations for seven minutes, and the GC's goal grew with them. Before
// the generations it held every row until 500,000 and then started over. A
// dropped row costs one read when merged again, never correctness.
type rollupCache struct {
	mu      sync.Mutex // held by Apply for its whole transaction
	rows    map[abacus.RollupKey]*abacus.RollupDelta
	old     map[abacus.RollupKey]*abacus.RollupDelta
	rotated time.Time        // when rows became the young generation
	limit   int              // rows per generation; 0 is maxCachedRollups
	now     func() time.Time // nil is time.Now; tests set it
}

// maxCachedRollups bounds the rows of one generation of the rollup cache
// (a row is ~350 B with its map entry): ~70 MB for both at most. At
// `abacus bench`'s shape (1,000 customers, three meters, 26 groups) a
// minute of event time has 26,000 rows.
const maxCachedRollups = 100_000

// rollupGenerationAge is how long a generation stays young: a row not
// merged for a generation's age leaves the cache at the next rotation.
const rollupGenerationAge = time.Minute

// get returns the cached row for k, moving it to the young generation.
func (c *rollupCache) get(k abacus.RollupKey) (*abacus.RollupDelta, bool) {
	if r, ok := c.rows[k]; ok {
		return r, true
	}
	r, ok := c.old[k]
	if ok {
		// The row's own key, not k: k's strings may be a log message's
		// (see above).
		c.rows[r.RollupKey] = r
		delete(c.old, k)
	}
	return r, ok
}

// reserve makes room for n more rows: a new young generation once the
// current one is rollupGenerationAge old or would pass the limit.
func (c *rollupCache) reserve(n int) {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	t := now()
	switch {
	case c.rows == nil:
		c.rows = make(map[abacus.RollupKey]*abacus.RollupDelta, n)
		c.rotated = t
	case len(c.rows)+n > cmp.Or(c.limit, maxCachedRollups) || t.Sub(c.rotated) >= rollupGenerationAge:
		c.old, c.rows = c.rows, make(map[abacus.RollupKey]*abacus.RollupDelta, len(c.rows))
		c.rotated = t
	}
}

// drop empties the cache: its rows may hold merges that did not commit.
func (c *rollupCache) drop() { c.rows, c.old = nil, nil }

// stmtCache holds the aggregator's multi-row statements, prepared once on
// the writer connection when the store opens. database/sql does not cache
// statements, and preparing them anew in every transaction was 7-8% of the
// aggregator's time; Tx.StmtContext reuses a statement already prepared on
// the transaction's connection (and prepares it on that connection if the
// pool ever replaced it). They cannot be prepared lazily: the writer has
// one connection, which the transaction holds.
type stmtCache struct {
	stmts map[string]*sql.Stmt
}

// prepare prepares every statement text get can be asked for.
func (c *stmtCache) prepare(ctx context.Context, db *sql.DB) error {
	c.stmts = map[string]*sql.Stmt{}
	queries := []string{changesQuery, missingRowidsQuery}
	for size := insertChunk; size > 0; size >>= 1 {
		for _, m := range multiRows {
			queries = append(queries, m.text(size))
		}
	}
	for _, q := range queries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		c.stmts[q] = st
	}
	return nil
}

func (c *stmtCache) get(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return tx.StmtContext(ctx, st), nil
	}
	return tx.PrepareContext(ctx, query)
}

func (c *stmtCache) close() error {
	var errs []error
	for _, st := range c.stmts {
		errs = append(errs, st.Close())
	}
	c.stmts = nil
	return errors.Join(errs...)
}

// chunks splits n rows into statement sizes: full chunks of max (a power
// of two), then the rest in powers of two, so that a handful of statement
// texts, all prepared, serve every n.
func chunks(n, max int) []int {
	var out []int
	for ; n >= max; n -= max {
		out = append(out, max)
	}
	for size := 1 << 30; n > 0; size >>= 1 {
		if n >= size {
			out = append(out, size)
			n -= size
		}
	}
	return out
}

// Positions returns the last applied sequence of each partition.
func (s *Store) Positions(ctx context.Context) (map[int]uint64, error) {
	return s.positions(ctx, "log_positions")
}

// positions reads a table of log positions (log_partition, seq): the
// usage aggregator's or the subscription consumer's.
func (s *Store) positions(ctx context.Context, table string) (map[int]uint64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT log_partition, seq FROM `+table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]uint64{}
	for rows.Next() {
		var p int
		var seq int64
		if err := rows.Scan(&p, &seq); err != nil {
			return nil, err
		}
		out[p] = uint64(seq)
	}
	return out, rows.Err()
}

type applyTx struct {
	tx      *sql.Tx
	stmts   *stmtCache
	cache   *rollupCache
	counted *countedsets.Cache
	stamp   stamp
}

func (t *applyTx) MetersVersion(ctx context.Context) (int64, error) {
	var v int64
	err := t.tx.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = 'meters_version'`).Scan(&v)
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

// multiRow is a statement whose VALUES (or IN list) repeats one row of
// placeholders: fewer statements is most of the cost of bulk writes in
// SQLite. Every size chunks can ask for is prepared when the store opens
// (stmtCache.prepare); text caches the statement text per size.
type multiRow struct {
	prefix, row, suffix string
	texts               sync.Map // rows → statement text
}

// text returns the statement for n rows.
func (m *multiRow) text(n int) string {
	if q, ok := m.texts.Load(n); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString(m.prefix)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.row)
	}
	b.WriteString(m.suffix)
	q := b.String()
	m.texts.Store(n, q)
	return q
}

// The aggregator's multi-row statements.
var (
	insertEvents = &multiRow{prefix: `INSERT INTO events(rowid, ` + eventColumns + `, counted_set, applied_at) VALUES `, row: `(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		suffix: ` ON CONFLICT(tenant_id, id) DO NOTHING`}
	storedHashes  = &multiRow{prefix: `SELECT tenant_id, id, hash FROM events WHERE (tenant_id, id) IN (VALUES `, row: `(?,?)`, suffix: `)`}
	addDuplicates = &multiRow{prefix: `UPDATE events SET duplicates = duplicates + v.column3 FROM (VALUES `, row: `(?,?,?)`,
		suffix: `) AS v WHERE events.tenant_id = v.column1 AND events.id = v.column2 RETURNING 1`}
	writeBlocks = &multiRow{prefix: `INSERT INTO event_blocks(tenant_id, customer_id, minute, applied_at, first_rowid, rowids) VALUES `, row: `(?,?,?,?,?,?)`}
	// An upsert, not INSERT OR REPLACE: REPLACE deletes the old row and
	// its rollups_meter_minute entry and inserts both again; an update in
	// place leaves the index alone (its columns are part of the key).
	writeRollups = &multiRow{prefix: `INSERT INTO rollups(tenant_id, meter, customer_id, minute, grp, count, has_value, sum, min, max, latest, latest_time, latest_id) VALUES `,
		row: `(?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		suffix: ` ON CONFLICT(tenant_id, meter, customer_id, minute, grp) DO UPDATE SET count = excluded.count,
		has_value = excluded.has_value, sum = excluded.sum, min = excluded.min, max = excluded.max,
		latest = excluded.latest, latest_time = excluded.latest_time, latest_id = excluded.latest_id`}
	multiRows = []*multiRow{insertEvents, storedHashes, addDuplicates, writeBlocks, writeRollups}
)

// eventKey identifies a raw event.
type eventKey struct{ tenant, id string }

// execChunks runs m over n rows in chunks, args(i, into) appending row i's
// arguments, calls each (if not nil) on every row the statements return,
// and returns how many they returned.
//
// It runs them through QueryContext, never ExecContext, although most
// return nothing: the SQLite driver binds a query's arguments and takes its
// first step in one cgo call, and an Exec's with a cgo call per argument,
// which on a 13-column upsert of 128 rows was 1,664 crossings a statement.
func (t *applyTx) execChunks(ctx context.Context, m *multiRow, n int, args func(i int, into []any) []any, each func(*sql.Rows) error) (int, error) {
	return t.execChunksThen(ctx, m, n, args, each, nil)
}

// execChunksThen is execChunks, calling after (if not nil) with each
// chunk's first row and size once its statement is done.
func (t *applyTx) execChunksThen(ctx context.Context, m *multiRow, n int, args func(i int, into []any) []any, each func(*sql.Rows) error,
	after func(start, size int) error) (int, error) {
	returned := 0
	var buf []any
	start := 0
	for _, size := range chunks(n, insertChunk) {
		buf = buf[:0]
		for i := start; i < start+size; i++ {
			buf = args(i, buf)
		}
		start += size
		st, err := t.stmts.get(ctx, t.tx, m.text(size))
		if err != nil {
			return 0, err
		}
		rows, err := st.QueryContext(ctx, buf...)
		if err != nil {
			return 0, err
		}
		for rows.Next() {
			returned++
			if each != nil {
				if err := each(rows); err != nil {
					rows.Close()
					return 0, err
				}
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return 0, err
		}
		if after != nil {
			if err := after(start-size, size); err != nil {
				return 0, err
			}
		}
	}
	return returned, nil
}

// insertChunk rows go into one multi-row statement: fewer statements is most of
// the cost of bulk inserts in SQLite. 16 columns × 128 rows stays far below
// SQLite's limit of 32,766 parameters.
const insertChunk = 128

func (t *applyTx) InsertEvents(ctx context.Context, events []abacus.AppliedEvent) ([]abacus.InsertResult, error) {
	if t.stamp.at.IsZero() {
		return nil, errNotStamped
	}
	appliedAt := ns(t.stamp.at)
	// Events are given their rowids: events[i] is offered rowid base+1+i.
	// The rowids are fresh (this transaction is the only writer), so which
	// of them are in the table after a statement says which of its events
	// it stored, without comparing keys (storedRows).
	var base int64
	if err := t.tx.QueryRowContext(ctx, `SELECT coalesce(max(rowid), 0) FROM events`).Scan(&base); err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	lists, err := t.countedLists(ctx, events)
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	results := make([]abacus.InsertResult, len(events))
	var buf []byte
	_, err = t.execChunksThen(ctx, insertEvents, len(events), func(i int, into []any) []any {
		e := &events[i]
		given := 0
		if e.TimeGiven {
			given = 1
		}
		counted, set := lists.Row(i)
		var skipped string
		skipped, buf = jsonenc.SkippedText(buf, e.Skipped)
		return append(into, base+1+int64(i), e.TenantID, e.ID, e.Type, e.Customer, e.Time.UnixNano(), given, e.IngestTime.UnixNano(),
			string(e.Properties), e.Hash[:], e.Partition, int64(e.Sequence), counted, skipped, set, appliedAt)
	}, nil, func(start, size int) error {
		return t.storedRows(ctx, base, start, size, results)
	})
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	var blocks eventBlocks
	var repeats []int
	for i := range events {
		if results[i].Inserted {
			blocks.add(&events[i].Event, base+1+int64(i))
		} else {
			repeats = append(repeats, i)
		}
	}
	if err := t.storedHashes(ctx, events, repeats, results); err != nil {
		return nil, err
	}
	if err := t.writeBlocks(ctx, &blocks, appliedAt); err != nil {
		return nil, err
	}
	return results, nil
}

// storedRows sets results[i].Inserted for the events of one insert
// statement, events[start:start+size], offered rowids base+1+start
// onwards. SQLite's changes() says how many rows it stored: if all of
// them, that one query is all it costs. Otherwise a second query lists the
// offered rowids not in the table, the events that repeated a stored one
// (or an earlier one of the same statement), without a row for each
// stored event; under `abacus bench`'s resends many statements hold a
// repeat of an event stored by an earlier transaction, so it often runs.
// It replaced RETURNING rowid, whose one row per stored event,
// stepped through database/sql, was ~0.5 µs of the single writer's time
// per event.
func (t *applyTx) storedRows(ctx context.Context, base int64, start, size int, results []abacus.InsertResult) error {
	changes, err := t.stmts.get(ctx, t.tx, changesQuery)
	if err != nil {
		return err
	}
	var stored int
	if err := changes.QueryRowContext(ctx).Scan(&stored); err != nil {
		return err
	}
	for i := start; i < start+size; i++ {
		results[i].Inserted = true
	}
	if stored == size {
		return nil
	}
	first := base + 1 + int64(start)
	missingQ, err := t.stmts.get(ctx, t.tx, missingRowidsQuery)
	if err != nil {
		return err
	}
	rows, err := missingQ.QueryContext(ctx, first, first+int64(size)-1)
	if err != nil {
		return err
	}
	defer rows.Close()
	missing := 0
	for rows.Next() {
		var rowid int64
		if err := rows.Scan(&rowid); err != nil {
			return err
		}
		i := int(rowid - base - 1)
		if i < start || i >= start+size || !results[i].Inserted {
			return fmt.Errorf("rowid %d is missing, which was not offered", rowid)
		}
		results[i].Inserted = false
		missing++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if size-missing != stored {
		return fmt.Errorf("a statement stored %d of %d events, yet %d of their rowids are in the table", stored, size, size-missing)
	}
	return nil
}

// storedRows' statements, prepared with the multi-row ones (stmtCache):
// prepared per statement, they were over a third of storedRows.
const (
	changesQuery       = `SELECT changes()`
	missingRowidsQuery = `WITH RECURSIVE offered(r) AS (SELECT ? UNION ALL SELECT r + 1 FROM offered WHERE r < ?)
		SELECT r FROM offered WHERE NOT EXISTS (SELECT 1 FROM events WHERE events.rowid = offered.r)`
)

// storedHashes reads the payload hashes of the stored events that
// events[i], i in repeats, repeat: a multi-row statement per chunk rather
// than a query per repeat (with the bench's 5% resends, the per-repeat
// queries and updates were 5% of the aggregator's transaction).
func (t *applyTx) storedHashes(ctx context.Context, events []abacus.AppliedEvent, repeats []int, results []abacus.InsertResult) error {
	want := make(map[eventKey]int, len(repeats))
	for _, i := range repeats {
		want[eventKey{events[i].TenantID, events[i].ID}] = i
	}
	_, err := t.execChunks(ctx, storedHashes, len(repeats), func(j int, into []any) []any {
		e := &events[repeats[j]]
		return append(into, e.TenantID, e.ID)
	}, func(rows *sql.Rows) error {
		var k eventKey
		var h []byte
		if err := rows.Scan(&k.tenant, &k.id, &h); err != nil {
			return err
		}
		i, ok := want[k]
		if !ok {
			return fmt.Errorf("got %q/%q, which was not asked for", k.tenant, k.id)
		}
		copy(results[i].ExistingHash[:], h)
		delete(want, k)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read stored events: %w", err)
	}
	if len(want) > 0 {
		var missing []string
		for k := range want {
			missing = append(missing, k.id)
		}
		return fmt.Errorf("read stored events %q: not inserted, yet not stored", missing)
	}
	return nil
}

// eventBlocks gathers the rows of event_blocks a transaction writes: per
// tenant, customer and minute of event time, the rowids of the events it
// stored (migration 0005; docs/ARCHITECTURE.md, "Event blocks").
type eventBlocks struct {
	index map[blockKey]int
	rows  []eventBlock
}

type blockKey struct {
	tenant, customer string
	minute           int64
}

type eventBlock struct {
	blockKey
	first  int64
	rowids []byte // a JSON array
}

func (b *eventBlocks) add(e *abacus.Event, rowid int64) {
	if b.index == nil {
		b.index = map[blockKey]int{}
	}
	k := blockKey{e.TenantID, e.Customer, abacus.MinuteOf(e.Time)}
	i, ok := b.index[k]
	if !ok {
		i = len(b.rows)
		b.index[k] = i
		b.rows = append(b.rows, eventBlock{blockKey: k, first: rowid, rowids: []byte{'['}})
	} else {
		b.rows[i].rowids = append(b.rows[i].rowids, ',')
	}
	r := &b.rows[i]
	r.first = min(r.first, rowid)
	r.rowids = strconv.AppendInt(r.rowids, rowid, 10)
}

func (t *applyTx) writeBlocks(ctx context.Context, b *eventBlocks, appliedAt int64) error {
	_, err := t.execChunks(ctx, writeBlocks, len(b.rows), func(i int, into []any) []any {
		r := &b.rows[i]
		r.rowids = append(r.rowids, ']')
		return append(into, r.tenant, r.customer, r.minute, appliedAt, r.first, string(r.rowids))
	}, nil)
	if err != nil {
		return fmt.Errorf("write event blocks: %w", err)
	}
	return nil
}

// RecordRepeats adds each stored event's repeats to its duplicate count,
// one multi-row UPDATE per chunk of distinct ids, and keeps conflicts as
// rows.
func (t *applyTx) RecordRepeats(ctx context.Context, repeats []abacus.Repeat) error {
	count := make(map[eventKey]int, len(repeats))
	var ids []eventKey
	for _, r := range repeats {
		k := eventKey{r.TenantID, r.EventID}
		if count[k] == 0 {
			ids = append(ids, k)
		}
		count[k]++
		if r.Conflict {
			if _, err := t.tx.ExecContext(ctx, `INSERT INTO event_conflicts(tenant_id, event_id, hash, log_partition, log_seq, seen_at) VALUES (?, ?, ?, ?, ?, ?)`,
				r.TenantID, r.EventID, r.Hash[:], r.Partition, int64(r.Sequence), r.SeenAt.UnixNano()); err != nil {
				return err
			}
		}
	}
	stored, err := t.execChunks(ctx, addDuplicates, len(ids), func(i int, into []any) []any {
		return append(into, ids[i].tenant, ids[i].id, count[ids[i]])
	}, nil)
	if err != nil {
		return fmt.Errorf("record repeats: %w", err)
	}
	if stored != len(ids) {
		return fmt.Errorf("record repeats: %d of %d repeated events are stored", stored, len(ids))
	}
	return nil
}

func decText(d *apd.Decimal) string { return d.Text('f') }

func parseDec(s string, d *apd.Decimal) error {
	_, _, err := d.SetString(s)
	return err
}

// AddRollups merges deltas into stored rows. SQLite has no exact decimal
// type, so the merge is done in Go on the current row (from the rollup
// cache, or a read) and the result is written back in multi-row
// statements; the single writer makes that safe.
func (t *applyTx) AddRollups(ctx context.Context, deltas []abacus.RollupDelta) error {
	c := t.cache // Apply holds c.mu
	c.reserve(len(deltas))
	var sel *sql.Stmt
	defer func() {
		if sel != nil {
			sel.Close()
		}
	}()
	rows := make([]*abacus.RollupDelta, 0, len(deltas))
	for i := range deltas {
		d := &deltas[i]
		cur, ok := c.get(d.RollupKey)
		if !ok {
			if sel == nil {
				var err error
				if sel, err = t.tx.PrepareContext(ctx, `SELECT count, has_value, sum, min, max, latest, latest_time, latest_id FROM rollups
					WHERE tenant_id = ? AND meter = ? AND customer_id = ? AND minute = ? AND grp = ?`); err != nil {
					return err
				}
			}
			k := abacus.RollupKey{TenantID: strings.Clone(d.TenantID), Meter: strings.Clone(d.Meter),
				Customer: strings.Clone(d.Customer), Group: strings.Clone(d.Group), Minute: d.Minute}
			var err error
			if cur, err = readRollup(ctx, sel, k); err != nil {
				return err
			}
			c.rows[k] = cur
		}
		latest := cur.LatestID
		if err := cur.Merge(d); err != nil {
			return fmt.Errorf("rollup %s/%s: %w", d.Meter, d.Customer, err)
		}
		if cur.LatestID == latest {
			cur.LatestID = latest // the row's own string, even if d's equal one was taken
		} else {
			cur.LatestID = strings.Clone(cur.LatestID) // d's strings are a message's
		}
		rows = append(rows, cur)
	}
	return t.writeRollups(ctx, rows)
}

// readRollup reads a stored row, or returns an empty one with the key.
func readRollup(ctx context.Context, sel *sql.Stmt, k abacus.RollupKey) (*abacus.RollupDelta, error) {
	cur := &abacus.RollupDelta{RollupKey: k}
	var hasValue int
	var sum, mn, mx, latest string
	err := sel.QueryRowContext(ctx, k.TenantID, k.Meter, k.Customer, k.Minute, k.Group).
		Scan(&cur.Count, &hasValue, &sum, &mn, &mx, &latest, &cur.LatestTime, &cur.LatestID)
	switch {
	case err == sql.ErrNoRows:
		return cur, nil
	case err != nil:
		return nil, err
	}
	cur.HasValue = hasValue == 1
	if cur.HasValue {
		if err := errorsJoin(parseDec(sum, &cur.Sum), parseDec(mn, &cur.Min), parseDec(mx, &cur.Max), parseDec(latest, &cur.Latest)); err != nil {
			return nil, fmt.Errorf("stored rollup: %w", err)
		}
	}
	return cur, nil
}

// writeRollups writes rows in primary key order: consecutive rows then
// fall in the same b-tree pages, and in a standalone run of the bench's
// rollup rows (18,000 per transaction out of 520,000) that cut SQLite's
// CPU per row from 8.9 to 5.4 µs against rows in map order.
func (t *applyTx) writeRollups(ctx context.Context, rows []*abacus.RollupDelta) error {
	slices.SortFunc(rows, func(a, b *abacus.RollupDelta) int { return a.RollupKey.Compare(&b.RollupKey) })
	_, err := t.execChunks(ctx, writeRollups, len(rows), func(i int, into []any) []any {
		r := rows[i]
		if !r.HasValue {
			// A count's row: its decimals are zero, and spelling them
			// costs four allocations.
			return append(into, r.TenantID, r.Meter, r.Customer, r.Minute, r.Group, r.Count, 0,
				"0", "0", "0", "0", r.LatestTime, r.LatestID)
		}
		return append(into, r.TenantID, r.Meter, r.Customer, r.Minute, r.Group, r.Count, 1,
			decText(&r.Sum), decText(&r.Min), decText(&r.Max), decText(&r.Latest), r.LatestTime, r.LatestID)
	}, nil)
	if err != nil {
		return fmt.Errorf("write rollups: %w", err)
	}
	return nil
}

func (t *applyTx) AddUniques(ctx context.Context, values []abacus.UniqueValue) error {
	if len(values) == 0 {
		return nil
	}
	st, err := t.tx.PrepareContext(ctx, `INSERT INTO uniques(tenant_id, meter, customer_id, minute, grp, value) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, u := range values {
		if _, err := st.ExecContext(ctx, u.TenantID, u.Meter, u.Customer, u.Minute, u.Group, u.Value); err != nil {
			return err
		}
	}
	return nil
}

func (t *applyTx) SetPosition(ctx context.Context, partition int, seq uint64) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO log_positions(log_partition, seq) VALUES (?, ?)
		ON CONFLICT(log_partition) DO UPDATE SET seq = excluded.seq`, partition, int64(seq))
	return err
}
