package abacus

import (
	"context"
	"time"
)

// StableAsOf returns the knowledge instant a read "as of asOf" must use to
// give the same answer every time it is repeated.
//
// A read as of K is stable once a barrier at or after K has returned: every
// write stamped ≤ K has committed and none can come. So when the last
// barrier is at or after asOf, asOf is returned as it is (reads of the past
// cost no lock). Otherwise StableAsOf takes a barrier (now is called under
// its exclusive lock) and returns asOf, or the barrier's K when asOf is
// later than K: a write stamped between K and asOf may still come, so what
// is known of that future is exactly what is known at K.
//
// The as-of reads of usage and charges go through it, so that the rule
// lives in one place. Errors are the store's.
func StableAsOf(ctx context.Context, s KnowledgeStore, asOf time.Time, now func() time.Time) (time.Time, error) {
	mark, err := s.LastBarrier(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if !asOf.After(mark) {
		return asOf, nil
	}
	k, err := s.Barrier(ctx, now)
	if err != nil {
		return time.Time{}, err
	}
	if asOf.After(k) {
		return k, nil
	}
	return asOf, nil
}

// NextKnown is the knowledge instant a stamp or a barrier picks:
// max(now, mark+1ns), in UTC and to the nanosecond, as stores keep it. The
// +1 makes every stamp taken after a barrier later than the barrier's K even
// when the clock stands still (a frozen test clock) or steps back.
func NextKnown(now, mark time.Time) time.Time {
	next := mark.Add(time.Nanosecond)
	if now.After(next) {
		next = now
	}
	return time.Unix(0, next.UnixNano()).UTC()
}
