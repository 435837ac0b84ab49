package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/abacus-billing/abacus"
	"github.com/cockroachdb/apd/v3"
)

// Apply runs fn in one write transaction.
func (s *Store) Apply(ctx context.Context, fn func(abacus.ApplyTx) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return fn(&applyTx{tx: tx}) })
}

// Positions returns the last applied sequence of each partition.
func (s *Store) Positions(ctx context.Context) (map[int]uint64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT log_partition, seq FROM log_positions`)
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
	tx *sql.Tx
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

// insertChunk rows go into one INSERT statement: fewer statements is most of
// the cost of bulk inserts in SQLite. 13 columns × 200 rows stays far below
// SQLite's limit of 32,766 parameters.
const insertChunk = 200

var insertSQL sync.Map // rows → statement text

func insertEventsSQL(n int) string {
	if q, ok := insertSQL.Load(n); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO events(` + eventColumns + `) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`(?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	}
	b.WriteString(` ON CONFLICT(tenant_id, id) DO NOTHING RETURNING tenant_id, id`)
	q := b.String()
	insertSQL.Store(n, q)
	return q
}

func jsonOrEmpty(v any, empty string) string {
	if v == nil {
		return empty
	}
	b, _ := json.Marshal(v)
	if string(b) == "null" {
		return empty
	}
	return string(b)
}

func (t *applyTx) InsertEvents(ctx context.Context, events []abacus.AppliedEvent) ([]abacus.InsertResult, error) {
	results := make([]abacus.InsertResult, len(events))
	type key struct{ tenant, id string }
	inserted := make(map[key]bool, len(events))
	args := make([]any, 0, insertChunk*13)
	for start := 0; start < len(events); start += insertChunk {
		chunk := events[start:min(start+insertChunk, len(events))]
		args = args[:0]
		for i := range chunk {
			e := &chunk[i]
			given := 0
			if e.TimeGiven {
				given = 1
			}
			args = append(args, e.TenantID, e.ID, e.Type, e.Customer, e.Time.UnixNano(), given, e.IngestTime.UnixNano(),
				string(e.Properties), e.Hash[:], e.Partition, int64(e.Sequence), jsonOrEmpty(e.Counted, "[]"), jsonOrEmpty(e.Skipped, "[]"))
		}
		rows, err := t.tx.QueryContext(ctx, insertEventsSQL(len(chunk)), args...)
		if err != nil {
			return nil, fmt.Errorf("insert events: %w", err)
		}
		for rows.Next() {
			var k key
			if err := rows.Scan(&k.tenant, &k.id); err != nil {
				rows.Close()
				return nil, err
			}
			inserted[k] = true
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("insert events: %w", err)
		}
	}
	for i := range events {
		e := &events[i]
		if inserted[key{e.TenantID, e.ID}] {
			results[i].Inserted = true
			continue
		}
		var h []byte
		if err := t.tx.QueryRowContext(ctx, `SELECT hash FROM events WHERE tenant_id = ? AND id = ?`, e.TenantID, e.ID).Scan(&h); err != nil {
			return nil, fmt.Errorf("read stored event %q: %w", e.ID, err)
		}
		copy(results[i].ExistingHash[:], h)
	}
	return results, nil
}

func (t *applyTx) RecordRepeats(ctx context.Context, repeats []abacus.Repeat) error {
	for _, r := range repeats {
		if _, err := t.tx.ExecContext(ctx, `UPDATE events SET duplicates = duplicates + 1 WHERE tenant_id = ? AND id = ?`, r.TenantID, r.EventID); err != nil {
			return err
		}
		if r.Conflict {
			if _, err := t.tx.ExecContext(ctx, `INSERT INTO event_conflicts(tenant_id, event_id, hash, log_partition, log_seq, seen_at) VALUES (?, ?, ?, ?, ?, ?)`,
				r.TenantID, r.EventID, r.Hash[:], r.Partition, int64(r.Sequence), r.SeenAt.UnixNano()); err != nil {
				return err
			}
		}
	}
	return nil
}

func decText(d *apd.Decimal) string { return d.Text('f') }

func parseDec(s string, d *apd.Decimal) error {
	_, _, err := d.SetString(s)
	return err
}

// AddRollups merges deltas into stored rows. SQLite has no exact decimal
// type, so the merge is read-modify-write in Go; the single writer makes
// that safe.
func (t *applyTx) AddRollups(ctx context.Context, deltas []abacus.RollupDelta) error {
	sel, err := t.tx.PrepareContext(ctx, `SELECT count, has_value, sum, min, max, latest, latest_time, latest_id FROM rollups
		WHERE tenant_id = ? AND meter = ? AND customer_id = ? AND minute = ? AND grp = ?`)
	if err != nil {
		return err
	}
	defer sel.Close()
	put, err := t.tx.PrepareContext(ctx, `INSERT OR REPLACE INTO rollups(tenant_id, meter, customer_id, minute, grp, count, has_value, sum, min, max, latest, latest_time, latest_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer put.Close()
	for i := range deltas {
		d := &deltas[i]
		var cur abacus.RollupDelta
		var hasValue int
		var sum, mn, mx, latest string
		err := sel.QueryRowContext(ctx, d.TenantID, d.Meter, d.Customer, d.Minute, d.Group).
			Scan(&cur.Count, &hasValue, &sum, &mn, &mx, &latest, &cur.LatestTime, &cur.LatestID)
		switch {
		case err == sql.ErrNoRows:
			cur = abacus.RollupDelta{}
		case err != nil:
			return err
		default:
			cur.HasValue = hasValue == 1
			if cur.HasValue {
				if err := errorsJoin(parseDec(sum, &cur.Sum), parseDec(mn, &cur.Min), parseDec(mx, &cur.Max), parseDec(latest, &cur.Latest)); err != nil {
					return fmt.Errorf("stored rollup: %w", err)
				}
			}
		}
		if err := cur.Merge(d); err != nil {
			return fmt.Errorf("rollup %s/%s: %w", d.Meter, d.Customer, err)
		}
		has := 0
		if cur.HasValue {
			has = 1
		}
		if _, err := put.ExecContext(ctx, d.TenantID, d.Meter, d.Customer, d.Minute, d.Group, cur.Count, has,
			decText(&cur.Sum), decText(&cur.Min), decText(&cur.Max), decText(&cur.Latest), cur.LatestTime, cur.LatestID); err != nil {
			return err
		}
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
