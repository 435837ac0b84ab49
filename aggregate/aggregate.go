// Package aggregate is the log consumer of Abacus: it reads event batches
// from the log and turns them, exactly once, into raw events, dedup records
// and rollups in the store.
//
// Exactly once: for each batch it writes, in ONE store transaction, the raw
// events (the first event with an id wins), the repeats (duplicates and
// conflicts), the rollup deltas of the new events, and the log position of
// every partition in the batch. The log is read from the stored position,
// so a crash anywhere before the commit redelivers the batch and a crash
// after it redelivers nothing; either way the effect is applied once.
package aggregate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
)

// Config configures an Aggregator. Zero values take the documented defaults.
type Config struct {
	Log   abacus.EventLog
	Store abacus.Store
	// Appliers is the number of concurrent store transactions (default 1,
	// right for SQLite's single writer; PostgreSQL takes more). Partition p
	// is applied by applier p mod Appliers, so one partition's batches stay
	// in order.
	Appliers int
	// MaxBatchEvents caps the events of one transaction (default 20,000).
	MaxBatchEvents int
	// QueueMessages bounds the log messages read ahead per applier
	// (default 16; a message holds up to ~1 MiB of events).
	QueueMessages int
	Logger        *slog.Logger
	Metrics       *Metrics
}

// Aggregator consumes the log into the store. Start it once; Stop drains.
type Aggregator struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	applied   map[int]uint64 // committed position per partition
	changed   chan struct{}  // closed and replaced on every commit
	meters    *meterCache
	lastError error
}

// New returns an Aggregator; call Start.
func New(cfg Config) *Aggregator {
	cfg.Appliers = cmp.Or(cfg.Appliers, 1)
	cfg.MaxBatchEvents = cmp.Or(cfg.MaxBatchEvents, 20000)
	cfg.QueueMessages = cmp.Or(cfg.QueueMessages, 16)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Aggregator{cfg: cfg, applied: map[int]uint64{}, changed: make(chan struct{}), meters: &meterCache{version: -1}}
}

// Start reads the stored positions and starts one reader per partition and
// the appliers. It returns once they run.
func (a *Aggregator) Start(ctx context.Context) error {
	pos, err := a.cfg.Store.Positions(ctx)
	if err != nil {
		return fmt.Errorf("aggregate: read positions: %w", err)
	}
	// A store ahead of its log means the log was replaced or lost: reading
	// from the stored positions would silently skip every event the new
	// log takes until it catches up. Refuse instead.
	for p, s := range pos {
		if p >= a.cfg.Log.Partitions() {
			return fmt.Errorf("aggregate: the store has a position for partition %d but the log has %d partitions; the partition count is fixed for the life of the data", p, a.cfg.Log.Partitions())
		}
		last, err := a.cfg.Log.LastSequence(ctx, p)
		if err != nil {
			return fmt.Errorf("aggregate: read log position of partition %d: %w", p, err)
		}
		if s > last {
			return fmt.Errorf("aggregate: the store has applied partition %d up to sequence %d but the event log ends at %d: the log is not the one this store was built from (replaced or lost?); refusing to start rather than skip events", p, s, last)
		}
	}
	a.mu.Lock()
	for p, s := range pos {
		a.applied[p] = s
	}
	a.mu.Unlock()
	ctx, a.cancel = context.WithCancel(ctx)
	queues := make([]chan abacus.LogMessage, a.cfg.Appliers)
	for i := range queues {
		queues[i] = make(chan abacus.LogMessage, a.cfg.QueueMessages)
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.applyLoop(ctx, queues[i]) }()
	}
	for p := 0; p < a.cfg.Log.Partitions(); p++ {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.readLoop(ctx, p, pos[p], queues[p%len(queues)]) }()
	}
	return nil
}

// Stop stops reading and waits for the transaction in flight to commit.
func (a *Aggregator) Stop() {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
}

// readLoop forwards partition p to its applier, resuming after the last
// forwarded message when the log read fails.
func (a *Aggregator) readLoop(ctx context.Context, p int, after uint64, q chan<- abacus.LogMessage) {
	for ctx.Err() == nil {
		err := a.cfg.Log.Read(ctx, p, after, func(m abacus.LogMessage) error {
			m.Data = append([]byte(nil), m.Data...)
			select {
			case q <- m:
				after = m.Sequence
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if ctx.Err() != nil {
			return
		}
		a.cfg.Logger.Warn("log read failed; retrying", "partition", p, "after", after, "err", err)
		sleep(ctx, time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// applyLoop takes what is queued (at least one message, at most
// MaxBatchEvents events) and applies it in one transaction, retrying the
// same batch until it commits: the queue is never skipped.
func (a *Aggregator) applyLoop(ctx context.Context, q <-chan abacus.LogMessage) {
	var batch []abacus.LogMessage
	var events []abacus.Event
	for {
		batch = batch[:0]
		select {
		case m := <-q:
			batch = append(batch, m)
		case <-ctx.Done():
			return
		}
		n := messageEvents(batch[0].Data)
	drain:
		for n < a.cfg.MaxBatchEvents {
			select {
			case m := <-q:
				batch = append(batch, m)
				n += messageEvents(m.Data)
			default:
				break drain
			}
		}
		for attempt := 0; ; attempt++ {
			var err error
			events, err = a.apply(context.WithoutCancel(ctx), batch, events[:0])
			if err == nil {
				break
			}
			a.cfg.Metrics.ApplyErrors.Inc()
			a.setError(err)
			a.cfg.Logger.Error("apply batch failed; retrying", "messages", len(batch), "attempt", attempt, "err", err)
			sleep(ctx, time.Duration(min(attempt+1, 10))*100*time.Millisecond)
			if ctx.Err() != nil {
				return
			}
		}
	}
}

func (a *Aggregator) setError(err error) {
	a.mu.Lock()
	a.lastError = err
	a.mu.Unlock()
}

// Applied returns the committed position of every partition.
func (a *Aggregator) Applied() map[int]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[int]uint64, len(a.applied))
	for p, s := range a.applied {
		out[p] = s
	}
	return out
}

// WaitApplied blocks until every partition in want has committed at least
// the given sequence, or ctx ends.
func (a *Aggregator) WaitApplied(ctx context.Context, want map[int]uint64) error {
	for {
		a.mu.Lock()
		done := true
		for p, s := range want {
			if a.applied[p] < s {
				done = false
				break
			}
		}
		ch := a.changed
		a.mu.Unlock()
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
func (a *Aggregator) CatchUp(ctx context.Context) error {
	want := map[int]uint64{}
	for p := 0; p < a.cfg.Log.Partitions(); p++ {
		s, err := a.cfg.Log.LastSequence(ctx, p)
		if err != nil {
			return err
		}
		want[p] = s
	}
	return a.WaitApplied(ctx, want)
}

// Lag returns, per partition, how many log messages are not applied yet.
func (a *Aggregator) Lag(ctx context.Context) (map[int]uint64, error) {
	applied := a.Applied()
	out := map[int]uint64{}
	var errs []error
	for p := 0; p < a.cfg.Log.Partitions(); p++ {
		s, err := a.cfg.Log.LastSequence(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s > applied[p] {
			out[p] = s - applied[p]
		} else {
			out[p] = 0
		}
	}
	return out, errors.Join(errs...)
}
