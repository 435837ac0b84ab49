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
	cfg.MaxBatchEvents = cmp.Or(cfg.MaxBatchEvents, 20000)
	cfg.QueueMessages = cmp.Or(cfg.QueueMessages, 16)
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

// readLoop forwards partition p to its applier.
func (a *Aggregator) readLoop(ctx context.Context, p int, after uint64, q chan<- abacus.LogMessage) {
	consume.ReadLoop(ctx, a.cfg.Log, p, after, a.cfg.Logger, func(m abacus.LogMessage) error {
		select {
		case q <- m:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
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
			consume.Sleep(ctx, time.Duration(min(attempt+1, 10))*100*time.Millisecond)
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
