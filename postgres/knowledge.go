package postgres

// Knowledge time (abacus.KnowledgeStore; docs/ARCHITECTURE.md, "Knowledge
// time"). PostgreSQL runs writers side by side, so the knowledge lock is a
// transaction-scoped advisory lock: stamping transactions hold it shared,
// a barrier exclusive. Like the subscription locks, its key includes the
// schema, so stores sharing a database in different schemas do not
// contend.

import (
	"context"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/rowbody"
	"github.com/jackc/pgx/v5"
)

const knowledgeLockKey = `hashtextextended('abacus.knowledge/' || current_schema(), 0)`

// knowledgeStamp takes the shared knowledge lock in tx and returns its
// knowledge stamp: max(now(), mark+1). Every write that changes what an
// invoice would say calls it in its own transaction (the aggregator and the
// subscription consumer through Stamp; invoice voiding directly), FIRST,
// before any row or other advisory lock: a transaction that waited for it
// while holding row locks could close a deadlock with a barrier waiting for
// the lock holders. The lock is held until the transaction ends.
//
// The mark is read in a statement of its own, after the lock is granted: a
// READ COMMITTED statement sees what committed before it started, so the
// last barrier (which released the lock only after committing) is seen.
func knowledgeStamp(ctx context.Context, tx pgx.Tx, now func() time.Time) (time.Time, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared(`+knowledgeLockKey+`)`); err != nil {
		return time.Time{}, err
	}
	mark, err := readMark(ctx, tx)
	if err != nil {
		return time.Time{}, err
	}
	return abacus.NextKnown(now(), mark), nil
}

func readMark(ctx context.Context, q dbReader) (time.Time, error) {
	var mark int64
	if err := q.QueryRow(ctx, `SELECT mark FROM knowledge_mark WHERE id = 1`).Scan(&mark); err != nil {
		return time.Time{}, err
	}
	return fromNS(mark), nil
}

var errNotStamped = abacus.Errorf(abacus.EINTERNAL, "insert events: the transaction has no knowledge stamp (call Stamp first)")

// stamp is a transaction's knowledge stamp, taken on first use.
type stamp struct{ at time.Time }

func (s *stamp) take(ctx context.Context, tx pgx.Tx, now func() time.Time) (time.Time, error) {
	if s.at.IsZero() {
		at, err := knowledgeStamp(ctx, tx, now)
		if err != nil {
			return time.Time{}, err
		}
		s.at = at
	}
	return s.at, nil
}

// Stamp returns the transaction's knowledge stamp, taking the shared
// knowledge lock on the first call.
func (t *applyTx) Stamp(ctx context.Context, now func() time.Time) (time.Time, error) {
	return t.stamp.take(ctx, t.tx, now)
}

// Stamp returns the transaction's knowledge stamp, taking the shared
// knowledge lock on the first call.
func (t *subscriptionTx) Stamp(ctx context.Context, now func() time.Time) (time.Time, error) {
	return t.stamp.take(ctx, t.tx, now)
}

// Barrier takes the knowledge lock exclusively, which waits for every
// stamping transaction in flight to end and holds off new ones, then moves
// the mark to K = max(now(), mark+1) and commits. The lock is released
// after the commit is visible, so the next stamp reads the new mark.
func (s *Store) Barrier(ctx context.Context, now func() time.Time) (time.Time, error) {
	var k time.Time
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+knowledgeLockKey+`)`); err != nil {
			return err
		}
		mark, err := readMark(ctx, tx)
		if err != nil {
			return err
		}
		k = abacus.NextKnown(now(), mark)
		_, err = tx.Exec(ctx, `UPDATE knowledge_mark SET mark = $1 WHERE id = 1`, ns(k))
		return err
	})
	if err != nil {
		return time.Time{}, err
	}
	return k, nil
}

// LastBarrier returns the mark: the K of the last barrier.
func (s *Store) LastBarrier(ctx context.Context) (time.Time, error) {
	return readMark(ctx, s.pool)
}

// ScanEvents calls fn for each stored event of one customer matching f, by
// event time, then id. The event passed to fn is reused.
//
// The events are found through their blocks (migration 0005): the blocks
// of the customer's minutes in [f.From, f.To) known by f.KnownBy, then
// each listed event through the primary key. Ordering by minute first lets
// the server sort one minute at a time (an incremental sort over the
// blocks' key order) rather than the whole scan.
func (s *Store) ScanEvents(ctx context.Context, f abacus.EventFilter, fn func(e *abacus.Event) error) error {
	w, err := rowbody.EventBlocksWhere(f, true)
	if err != nil {
		return err
	}
	rows, err := s.pool.Query(ctx, `SELECT e.id, e.type, e.time, e.time_given, e.ingest_time, e.properties
		FROM event_blocks b CROSS JOIN LATERAL unnest(b.ids) AS j(id)
		JOIN events e ON e.tenant_id = b.tenant_id AND e.id = j.id
		WHERE `+w.String()+` ORDER BY b.minute, e.time, e.id`, w.Args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	e := abacus.Event{TenantID: f.TenantID, Customer: f.Customer}
	var t, it int64
	var props string
	for rows.Next() {
		if err := rows.Scan(&e.ID, &e.Type, &t, &e.TimeGiven, &it, &props); err != nil {
			return err
		}
		e.Time, e.IngestTime, e.Properties = fromNS(t), fromNS(it), []byte(props)
		if err := fn(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
