package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/countedsets"
	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"
)

// FindEvent returns the first-received event with id, its duplicate count
// and its conflicting repeats. ENOTFOUND.
func (s *Store) FindEvent(ctx context.Context, tenantID, id string) (*abacus.StoredEvent, error) {
	var e abacus.StoredEvent
	var t, it, seq int64
	var part int32
	var props, skipped string
	var counted *string // nil: the row names a list counted_sets does not hold
	var hash []byte
	err := s.pool.QueryRow(ctx, `SELECT `+storedEventColumns+`, duplicates FROM events WHERE tenant_id = $1 AND id = $2`, tenantID, id).
		Scan(&e.TenantID, &e.ID, &e.Type, &e.Customer, &t, &e.TimeGiven, &it, &props, &hash, &part, &seq, &counted, &skipped, &e.Duplicates)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("event", id)
	} else if err != nil {
		return nil, err
	}
	if counted == nil {
		return nil, countedsets.Missing(tenantID, id)
	}
	e.Time, e.IngestTime = fromNS(t), fromNS(it)
	e.Properties, e.Partition, e.Sequence = []byte(props), int(part), uint64(seq)
	if err := errors.Join(json.Unmarshal([]byte(*counted), &e.Counted), json.Unmarshal([]byte(skipped), &e.Skipped)); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT hash, log_partition, log_seq, seen_at FROM event_conflicts WHERE tenant_id = $1 AND event_id = $2 ORDER BY log_partition, log_seq`, tenantID, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		r := abacus.Repeat{TenantID: tenantID, EventID: id, Conflict: true}
		var h []byte
		var rpart int32
		var rseq, seen int64
		if err := rows.Scan(&h, &rpart, &rseq, &seen); err != nil {
			return nil, err
		}
		copy(r.Hash[:], h)
		r.Partition, r.Sequence, r.SeenAt = int(rpart), uint64(rseq), fromNS(seen)
		e.Conflicts = append(e.Conflicts, r)
	}
	return &e, rows.Err()
}

// filterSQL appends the optional customer condition of f to q and returns
// the query with its arguments.
func filterSQL(q string, f abacus.RollupFilter) (string, []any) {
	args := []any{f.TenantID, f.Meter, f.FromMinute, f.ToMinute}
	if f.Customer != "" {
		q += ` AND customer_id = $5`
		args = append(args, f.Customer)
	}
	return q, args
}

// parseDec reads a NUMERIC's text. The text is not reduced: NUMERIC keeps
// the scale apd arithmetic gives (1.5 + 1.5 is 3.0 in both), so the value
// read back prints exactly as the one sqlite stores with Text('f').
func parseDec(s string, d *apd.Decimal) error {
	_, _, err := d.SetString(s)
	return err
}

// ScanRollups calls fn for each rollup row matching f. The row passed to fn
// is reused.
func (s *Store) ScanRollups(ctx context.Context, f abacus.RollupFilter, fn func(*abacus.RollupRow) error) error {
	q, args := filterSQL(`SELECT customer_id, minute, grp, count, has_value, sum::text, min::text, max::text, latest::text, latest_time, latest_id FROM rollups
		WHERE tenant_id = $1 AND meter = $2 AND minute >= $3 AND minute < $4`, f)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var row abacus.RollupRow
	row.TenantID, row.Meter = f.TenantID, f.Meter
	var sum, mn, mx, latest string
	for rows.Next() {
		if err := rows.Scan(&row.Customer, &row.Minute, &row.Group, &row.Count, &row.HasValue, &sum, &mn, &mx, &latest, &row.LatestTime, &row.LatestID); err != nil {
			return err
		}
		row.Sum, row.Min, row.Max, row.Latest = apd.Decimal{}, apd.Decimal{}, apd.Decimal{}, apd.Decimal{}
		if row.HasValue {
			if err := errors.Join(parseDec(sum, &row.Sum), parseDec(mn, &row.Min), parseDec(mx, &row.Max), parseDec(latest, &row.Latest)); err != nil {
				return fmt.Errorf("stored rollup %s/%d: %w", row.Customer, row.Minute, err)
			}
		}
		if err := fn(&row); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ScanUniques calls fn for each distinct value matching f. The value passed
// to fn is reused.
func (s *Store) ScanUniques(ctx context.Context, f abacus.RollupFilter, fn func(*abacus.UniqueValue) error) error {
	q, args := filterSQL(`SELECT customer_id, minute, grp, value FROM uniques WHERE tenant_id = $1 AND meter = $2 AND minute >= $3 AND minute < $4`, f)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	u := abacus.UniqueValue{RollupKey: abacus.RollupKey{TenantID: f.TenantID, Meter: f.Meter}}
	for rows.Next() {
		if err := rows.Scan(&u.Customer, &u.Minute, &u.Group, &u.Value); err != nil {
			return err
		}
		if err := fn(&u); err != nil {
			return err
		}
	}
	return rows.Err()
}
