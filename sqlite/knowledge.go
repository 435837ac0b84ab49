package sqlite

// Knowledge time (abacus.KnowledgeStore; docs/ARCHITECTURE.md, "Knowledge
// time"). SQLite has one writer and every write transaction begins
// IMMEDIATE, holding the write lock from its first statement to its end:
// that lock is the knowledge lock, shared and exclusive at once. A stamp
// reads the mark inside the write transaction; a barrier is a write
// transaction that moves the mark.

import (
	"context"
	"database/sql"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/rowbody"
)

// knowledgeStamp returns the knowledge stamp of the write transaction tx:
// max(now(), mark+1), now read while the write lock is held. Every write
// that changes what an invoice would say calls it in its own transaction
// (the aggregator and the subscription consumer through Stamp; invoice
// voiding directly) and stores the instant with what it writes.
func knowledgeStamp(ctx context.Context, tx *sql.Tx, now func() time.Time) (time.Time, error) {
	mark, err := readMark(ctx, tx)
	if err != nil {
		return time.Time{}, err
	}
	return abacus.NextKnown(now(), mark), nil
}

func readMark(ctx context.Context, q dbReader) (time.Time, error) {
	var mark int64
	if err := q.QueryRowContext(ctx, `SELECT mark FROM knowledge_mark WHERE id = 1`).Scan(&mark); err != nil {
		return time.Time{}, err
	}
	return fromNS(mark), nil
}

var errNotStamped = abacus.Errorf(abacus.EINTERNAL, "insert events: the transaction has no knowledge stamp (call Stamp first)")

// stamp is a transaction's knowledge stamp, taken on first use.
type stamp struct{ at time.Time }

func (s *stamp) take(ctx context.Context, tx *sql.Tx, now func() time.Time) (time.Time, error) {
	if s.at.IsZero() {
		at, err := knowledgeStamp(ctx, tx, now)
		if err != nil {
			return time.Time{}, err
		}
		s.at = at
	}
	return s.at, nil
}

// Stamp returns the transaction's knowledge stamp, taking it on the first
// call.
func (t *applyTx) Stamp(ctx context.Context, now func() time.Time) (time.Time, error) {
	return t.stamp.take(ctx, t.tx, now)
}

// Stamp returns the transaction's knowledge stamp, taking it on the first
// call.
func (t *subscriptionTx) Stamp(ctx context.Context, now func() time.Time) (time.Time, error) {
	return t.stamp.take(ctx, t.tx, now)
}

// Barrier moves the mark to K = max(now(), mark+1) in a write transaction.
// Holding the one write lock, no stamping transaction is open, and every
// later one reads the new mark.
func (s *Store) Barrier(ctx context.Context, now func() time.Time) (time.Time, error) {
	var k time.Time
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if k, err = knowledgeStamp(ctx, tx, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE knowledge_mark SET mark = ? WHERE id = 1`, ns(k))
		return err
	})
	if err != nil {
		return time.Time{}, err
	}
	return k, nil
}

// LastBarrier returns the mark: the K of the last barrier.
func (s *Store) LastBarrier(ctx context.Context) (time.Time, error) {
	return readMark(ctx, s.r)
}

// ScanEvents calls fn for each stored event of one customer matching f, by
// event time, then id. The event passed to fn is reused.
//
// The events are found through their blocks (migration 0005): the blocks
// of the customer's minutes in [f.From, f.To) known by f.KnownBy, in
// minute order, then each block's events by rowid. Every event of a block
// lies in its minute, so ordering by minute, then time and id, is ordering
// by time and id, and SQLite sorts one minute at a time (its plan says
// "USE TEMP B-TREE FOR LAST 2 TERMS OF ORDER BY"), never the whole scan.
func (s *Store) ScanEvents(ctx context.Context, f abacus.EventFilter, fn func(e *abacus.Event) error) error {
	w, err := rowbody.EventBlocksWhere(f, false)
	if err != nil {
		return err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT e.id, e.type, e.time, e.time_given, e.ingest_time, e.properties
		FROM event_blocks b, json_each(b.rowids) j, events e
		WHERE `+w.String()+` AND e.rowid = j.value ORDER BY b.minute, e.time, e.id`, w.Args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	e := abacus.Event{TenantID: f.TenantID, Customer: f.Customer}
	for rows.Next() {
		var t, it int64
		var given int
		if err := rows.Scan(&e.ID, &e.Type, &t, &given, &it, &e.Properties); err != nil {
			return err
		}
		e.Time, e.TimeGiven, e.IngestTime = fromNS(t), given == 1, fromNS(it)
		if err := fn(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
