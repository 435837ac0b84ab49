// Package consume holds what every log consumer of Abacus shares: the
// committed position of each partition (and waiting for it), the check that
// a store is not ahead of its log, and a read loop that resumes after
// failures. The usage aggregator and the subscription consumer both keep
// their positions in the store, in the transaction of what they derived, and
// use a Tracker to publish them to the rest of the process.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
)

// Tracker publishes the committed position of every partition of one log.
type Tracker struct {
	log     abacus.EventLog
	mu      sync.Mutex
	applied map[int]uint64
	changed chan struct{} // closed and replaced on every commit
}

// NewTracker returns a tracker with nothing applied.
func NewTracker(log abacus.EventLog) *Tracker {
	return &Tracker{log: log, applied: map[int]uint64{}, changed: make(chan struct{})}
}

// Load takes the positions stored for the log (what names the consumer in
// errors). A store ahead of its log means the log was replaced or lost:
// reading from the stored positions would silently skip every message the
// new log takes until it catches up, so Load refuses instead.
func (t *Tracker) Load(ctx context.Context, what string, pos map[int]uint64) error {
	for p, s := range pos {
		if p >= t.log.Partitions() {
			return fmt.Errorf("%s: the store has a position for partition %d but the log has %d partitions; the partition count is fixed for the life of the data", what, p, t.log.Partitions())
		}
		last, err := t.log.LastSequence(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: read log position of partition %d: %w", what, p, err)
		}
		if s > last {
			return fmt.Errorf("%s: the store has applied partition %d up to sequence %d but the log ends at %d: the log is not the one this store was built from (replaced or lost?); refusing to start rather than skip messages", what, p, s, last)
		}
	}
	t.Commit(pos)
	return nil
}

// Commit publishes newly committed positions (positions never go back).
func (t *Tracker) Commit(pos map[int]uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, s := range pos {
		t.applied[p] = max(t.applied[p], s)
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// Applied returns the committed position of every partition.
func (t *Tracker) Applied() map[int]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.applied)
}

// WaitApplied blocks until every partition in want has committed at least
// the given sequence, or ctx ends.
func (t *Tracker) WaitApplied(ctx context.Context, want map[int]uint64) error {
	for {
		t.mu.Lock()
		done := true
		for p, s := range want {
			if t.applied[p] < s {
				done = false
				break
			}
		}
		ch := t.changed
		t.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CatchUp waits until everything in the log when it was called is applied.
func (t *Tracker) CatchUp(ctx context.Context) error {
	want := map[int]uint64{}
	for p := 0; p < t.log.Partitions(); p++ {
		s, err := t.log.LastSequence(ctx, p)
		if err != nil {
			return err
		}
		want[p] = s
	}
	return t.WaitApplied(ctx, want)
}

// Lag returns, per partition, how many log messages are not applied yet.
func (t *Tracker) Lag(ctx context.Context) (map[int]uint64, error) {
	applied := t.Applied()
	out := map[int]uint64{}
	var errs []error
	for p := 0; p < t.log.Partitions(); p++ {
		s, err := t.log.LastSequence(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[p] = s - min(s, applied[p])
	}
	return out, errors.Join(errs...)
}

// ReadLoop reads partition p of log from after+1 into fn until ctx ends,
// resuming after the last message fn accepted whenever the read fails. fn
// gets a copy of the message data it may keep.
func ReadLoop(ctx context.Context, log abacus.EventLog, p int, after uint64, logger *slog.Logger, fn func(abacus.LogMessage) error) {
	for ctx.Err() == nil {
		err := log.Read(ctx, p, after, func(m abacus.LogMessage) error {
			m.Data = append([]byte(nil), m.Data...)
			if err := fn(m); err != nil {
				return err
			}
			after = m.Sequence
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		logger.Warn("log read failed; retrying", "partition", p, "after", after, "err", err)
		Sleep(ctx, time.Second)
	}
}

// Sleep waits for d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
