// Package aggregate is the log consumer of Abacus: it reads event batches
// from the log and turns them, exactly once, into raw events, dedup records
// and rollups in the store.
//
// Exactly once: for each batch it writes, in ONE store transaction stamped
// with knowledge time, the raw events (the first event with an id wins),
// the repeats (duplicates and
// conflicts), the rollup deltas of the new events, and the log position of
// every partition in the batch. The log is read from the stored position,
// so a crash anywhere before the commit redelivers the batch and a crash
// after it redelivers nothing; either way the effect is applied once.
package aggregate

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/consume"
	"golang.org/x/sync/semaphore"
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
	// MaxBatchEvents caps the events of one transaction (default 100,000
	// divided among the appliers).
	// Under load a transaction takes what queued up while the previous one
	// ran, so transactions grow with load: a rollup row then absorbs more
	// events per write, which is most of what a larger batch saves.
	MaxBatchEvents int
	// QueueBytes bounds the log message bytes read ahead per applier
	// (default 32 MiB, ~100,000 events of ~250 B, divided among the
	// appliers). It is a byte bound, not a message count: group-committed
	// messages range from one event to thousands, and a count of messages
	// either starved transactions of events (small messages) or let memory
	// balloon (large ones).
	QueueBytes int64
	// Linger is how long an applier waits for more events when fewer than
	// LingerEvents (default 2,000) are queued (default 50 ms; negative: no
	// wait). Under a trickle of small messages (single-event requests) an
	// applier that applies at once commits a transaction per few events,
	// and the per-transaction work (rewriting the rollup rows touched, the
	// commit and its fsync) was ~2/3 of the CPU per event. Freshness pays
	// at most Linger.
	Linger       time.Duration
	LingerEvents int
	// Clock gives the knowledge stamps of apply transactions (default the
	// system clock): an event is known from the stamp of the transaction
	// that stored it (docs/ARCHITECTURE.md, "Knowledge time").
	Clock   abacus.Clock
	Logger  *slog.Logger
	Metrics *Metrics
}

// Aggregator consumes the log into the store. Start it once; Stop drains.
type Aggregator struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Tracker publishes the committed position of every partition
	// (Applied, WaitApplied, CatchUp, Lag).
	*consume.Tracker

	mu        sync.Mutex
	meters    *meterCache
	lastError error
}

// New returns an Aggregator; call Start.
func New(cfg Config) *Aggregator {
	cfg.Appliers = cmp.Or(cfg.Appliers, 1)
	// The defaults are shared among the appliers, so that memory does not
	// grow with their number: PostgreSQL's 4 appliers each holding 100k
	// events (as 14 column arrays) took 3.4 GiB at ingest batches of 1,000.
	cfg.MaxBatchEvents = cmp.Or(cfg.MaxBatchEvents, 100_000/cfg.Appliers)
	cfg.QueueBytes = cmp.Or(cfg.QueueBytes, int64(32<<20/cfg.Appliers))
	cfg.Linger = cmp.Or(cfg.Linger, 50*time.Millisecond)
	cfg.LingerEvents = cmp.Or(cfg.LingerEvents, 2000)
	if cfg.Clock == nil {
		cfg.Clock = abacus.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Aggregator{cfg: cfg, Tracker: consume.NewTracker(cfg.Log), meters: &meterCache{version: -1}}
}

// Start reads the stored positions and starts one reader per partition and
// the appliers. It returns once they run.
func (a *Aggregator) Start(ctx context.Context) error {
	pos, err := a.cfg.Store.Positions(ctx)
	if err != nil {
		return fmt.Errorf("aggregate: read positions: %w", err)
	}
	if err := a.Tracker.Load(ctx, "aggregate", pos); err != nil {
		return err
	}
	ctx, a.cancel = context.WithCancel(ctx)
	queues := make([]*queue, a.cfg.Appliers)
	for i := range queues {
		queues[i] = newQueue(a.cfg.QueueBytes)
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

// readLoop forwards partition p to its applier.
func (a *Aggregator) readLoop(ctx context.Context, p int, after uint64, q *queue) {
	consume.ReadLoop(ctx, a.cfg.Log, p, after, a.cfg.Logger, func(m abacus.LogMessage) error {
		return q.put(ctx, m)
	})
}

// applyLoop takes what is queued (at least one message, at most
// MaxBatchEvents events) and applies it in one transaction, retrying the
// same batch until it commits: the queue is never skipped.
func (a *Aggregator) applyLoop(ctx context.Context, q *queue) {
	var batch []abacus.LogMessage
	var events []abacus.Event
	for {
		var err error
		if batch, err = q.take(ctx, batch[:0], a.cfg.MaxBatchEvents, a.cfg.LingerEvents, a.cfg.Linger); err != nil {
			return
		}
		for attempt := 0; ; attempt++ {
			events, err = a.apply(context.WithoutCancel(ctx), batch, events[:0])
			if err == nil {
				break
			}
			a.cfg.Metrics.ApplyErrors.Inc()
			a.setError(err)
			a.cfg.Logger.Error("apply batch failed; retrying", "messages", len(batch), "attempt", attempt, "err", err)
			consume.Sleep(ctx, time.Duration(min(attempt+1, 10))*100*time.Millisecond)
			if ctx.Err() != nil {
				return
			}
		}
		q.done(batch)
		// Drop what the batch referenced (log messages, decoded events and
		// the decoding arenas their strings share) so that an idle or a
		// smaller next batch does not keep it alive.
		clear(batch)
		clear(events)
	}
}

func (a *Aggregator) setError(err error) {
	a.mu.Lock()
	a.lastError = err
	a.mu.Unlock()
}

// queue holds the log messages read ahead for one applier, bounded in
// bytes. Bytes are released once their transaction committed.
type queue struct {
	ch  chan abacus.LogMessage
	sem *semaphore.Weighted
	max int64
}

func newQueue(maxBytes int64) *queue {
	// The channel only needs to hold what the byte bound lets in; one
	// event is the smallest message.
	return &queue{ch: make(chan abacus.LogMessage, 1<<16), sem: semaphore.NewWeighted(maxBytes), max: maxBytes}
}

func (q *queue) weight(m abacus.LogMessage) int64 { return min(int64(len(m.Data))+1, q.max) }

func (q *queue) put(ctx context.Context, m abacus.LogMessage) error {
	if err := q.sem.Acquire(ctx, q.weight(m)); err != nil {
		return err
	}
	select {
	case q.ch <- m:
		return nil
	case <-ctx.Done():
		q.sem.Release(q.weight(m))
		return ctx.Err()
	}
}

// take waits for one message, then adds what else is queued up to
// maxEvents events; while it holds fewer than lingerEvents it waits up to
// linger for more.
func (q *queue) take(ctx context.Context, batch []abacus.LogMessage, maxEvents, lingerEvents int, linger time.Duration) ([]abacus.LogMessage, error) {
	select {
	case m := <-q.ch:
		batch = append(batch, m)
	case <-ctx.Done():
		return batch, ctx.Err()
	}
	n := messageEvents(batch[0].Data)
	var timeout <-chan time.Time
	for n < maxEvents {
		select {
		case m := <-q.ch:
			batch = append(batch, m)
			n += messageEvents(m.Data)
			continue
		default:
		}
		if n >= lingerEvents || linger <= 0 {
			return batch, nil
		}
		if timeout == nil {
			t := time.NewTimer(linger)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case m := <-q.ch:
			batch = append(batch, m)
			n += messageEvents(m.Data)
		case <-timeout:
			return batch, nil
		case <-ctx.Done():
			return batch, nil // apply what was taken; the next take sees ctx
		}
	}
	return batch, nil
}

// done releases the bytes of an applied batch.
func (q *queue) done(batch []abacus.LogMessage) {
	for _, m := range batch {
		q.sem.Release(q.weight(m))
	}
}
