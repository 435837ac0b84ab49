package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/countedsets"
)

func errorsJoin(errs ...error) error { return errors.Join(errs...) }

// FindEvent returns the stored event with its repeats.
func (s *Store) FindEvent(ctx context.Context, tenantID, id string) (*abacus.StoredEvent, error) {
	var e abacus.StoredEvent
	var t, it, seq int64
	var given int
	var props, skipped string
	var counted sql.NullString // NULL: the row names a list counted_sets does not hold
	var hash []byte
	err := s.r.QueryRowContext(ctx, `SELECT `+storedEventColumns+`, duplicates FROM events WHERE tenant_id = ? AND id = ?`, tenantID, id).
		Scan(&e.TenantID, &e.ID, &e.Type, &e.Customer, &t, &given, &it, &props, &hash, &e.Partition, &seq, &counted, &skipped, &e.Duplicates)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("event", id)
	} else if err != nil {
		return nil, err
	}
	if !counted.Valid {
		return nil, countedsets.Missing(tenantID, id)
	}
	e.Time, e.TimeGiven, e.IngestTime = fromNS(t), given == 1, fromNS(it)
	e.Properties, e.Sequence = []byte(props), uint64(seq)
	if err := errors.Join(json.Unmarshal([]byte(counted.String), &e.Counted), json.Unmarshal([]byte(skipped), &e.Skipped)); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT hash, log_partition, log_seq, seen_at FROM event_conflicts WHERE tenant_id = ? AND event_id = ? ORDER BY log_partition, log_seq`, tenantID, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		r := abacus.Repeat{TenantID: tenantID, EventID: id, Conflict: true}
		var h []byte
		var rseq, seen int64
		if err := rows.Scan(&h, &r.Partition, &rseq, &seen); err != nil {
			return nil, err
		}
		copy(r.Hash[:], h)
		r.Sequence, r.SeenAt = uint64(rseq), fromNS(seen)
		e.Conflicts = append(e.Conflicts, r)
	}
	return &e, rows.Err()
}

// ScanRollups calls fn for each matching rollup row.
func (s *Store) ScanRollups(ctx context.Context, f abacus.RollupFilter, fn func(*abacus.RollupRow) error) error {
	q := `SELECT customer_id, minute, grp, count, has_value, sum, min, max, latest, latest_time, latest_id FROM rollups
		WHERE tenant_id = ? AND meter = ? AND minute >= ? AND minute < ?`
	args := []any{f.TenantID, f.Meter, f.FromMinute, f.ToMinute}
	if f.Customer != "" {
		q += ` AND customer_id = ?`
		args = append(args, f.Customer)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var row abacus.RollupRow
	row.TenantID, row.Meter = f.TenantID, f.Meter
	for rows.Next() {
		var has int
		var sum, mn, mx, latest string
		if err := rows.Scan(&row.Customer, &row.Minute, &row.Group, &row.Count, &has, &sum, &mn, &mx, &latest, &row.LatestTime, &row.LatestID); err != nil {
			return err
		}
		row.HasValue = has == 1
		if row.HasValue {
			if err := errors.Join(parseDec(sum, &row.Sum), parseDec(mn, &row.Min), parseDec(mx, &row.Max), parseDec(latest, &row.Latest)); err != nil {
				return err
			}
		}
		if err := fn(&row); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ScanUniques calls fn for each matching distinct value.
func (s *Store) ScanUniques(ctx context.Context, f abacus.RollupFilter, fn func(*abacus.UniqueValue) error) error {
	q := `SELECT customer_id, minute, grp, value FROM uniques WHERE tenant_id = ? AND meter = ? AND minute >= ? AND minute < ?`
	args := []any{f.TenantID, f.Meter, f.FromMinute, f.ToMinute}
	if f.Customer != "" {
		q += ` AND customer_id = ?`
		args = append(args, f.Customer)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
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
