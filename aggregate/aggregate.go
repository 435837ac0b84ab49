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
	"runtime"
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
	// Interval is the least time from the start of one transaction to
	// the start of the next (default 500 ms; negative: none), unless the
	// batch gathered meanwhile holds MaxBatchEvents events or half of
	// QueueBytes (the queue's bound would stop the reading otherwise, and
	// cap the rate at QueueBytes per Interval). An event arriving after a
	// quiet spell is applied at once; under load, an event waits for the
	// longer of Interval and the transaction before it, and what a
	// transaction costs whatever its size is spread over more events: it
	// rewrites every rollup row it touches, writes its event blocks, and
	// its commit's page writes (WAL, then checkpoint) grow with the pages
	// touched, not with the events. Applying as soon as the previous
	// transaction ended, at 32% of the peak rate (17-20k events/s, ~150 ms
	// transactions) SQLite's writer spent 39 µs of CPU per event against
	// ~10 at the peak, the commit alone 16; with 500 ms the whole process
	// spent 59-61 µs per event instead of 71-78, and freshness p99 was
	// 603-652 ms instead of 238-619 (docs/BENCHMARKS.md, sixth round). It
	// replaces a 50 ms linger that applied only below 2,000 queued events.
	Interval time.Duration
	// PinAppliers locks each applier goroutine to an OS thread. For a
	// store written through cgo (SQLite's C library) that measured ~5%
	// more events per second end to end: the writer's transaction, a long
	// run of C calls, stays on one thread instead of moving between
	// threads after each call (docs/ARCHITECTURE.md, "GOMAXPROCS").
	PinAppliers bool
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

	// What Busy reports: the time of committed transactions and their
	// count, and the transactions in flight (their number and the sum of
	// their start times, so that their time so far is inTx·now − txSince).
	busyMu  sync.Mutex
	busy    time.Duration
	txs     int64
	inTx    int64
	txSince int64
}

// Busy returns the time appliers have spent in transactions since Start,
// the one in flight included so far, and how many have committed. Over an
// interval, busy time ÷ (interval × appliers) is how close the aggregator
// is to its limit (abacus bench prints it).
func (a *Aggregator) Busy() (time.Duration, int64) {
	a.busyMu.Lock()
	defer a.busyMu.Unlock()
	now := time.Now().UnixNano()
	return a.busy + time.Duration(a.inTx*now-a.txSince), a.txs
}

func (a *Aggregator) txStarted(start time.Time) {
	a.busyMu.Lock()
	defer a.busyMu.Unlock()
	a.inTx++
	a.txSince += start.UnixNano()
}

// txEnded ends the transaction started at start and returns its duration,
// counted in Busy if it committed.
func (a *Aggregator) txEnded(start time.Time, committed bool) time.Duration {
	a.busyMu.Lock()
	defer a.busyMu.Unlock()
	a.inTx--
	a.txSince -= start.UnixNano()
	took := time.Since(start)
	if committed {
		a.busy += took
		a.txs++
	}
	return took
}

// Appliers is the number of concurrent apply transactions.
func (a *Aggregator) Appliers() int { return a.cfg.Appliers }

// New returns an Aggregator; call Start.
func New(cfg Config) *Aggregator {
	cfg.Appliers = cmp.Or(cfg.Appliers, 1)
	// The defaults are shared among the appliers, so that memory does not
	// grow with their number: PostgreSQL's 4 appliers each holding 100k
	// events (as 14 column arrays) took 3.4 GiB at ingest batches of 1,000.
	cfg.MaxBatchEvents = cmp.Or(cfg.MaxBatchEvents, 100_000/cfg.Appliers)
	cfg.QueueBytes = cmp.Or(cfg.QueueBytes, int64(32<<20/cfg.Appliers))
	cfg.Interval = cmp.Or(cfg.Interval, 500*time.Millisecond)
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

// applyLoop applies the batches gather hands it, each in one transaction,
// retrying the same batch until it commits: the queue is never skipped.
// While a transaction runs, gather decodes and evaluates what arrives into
// the next batch, and hands over all of it once the transaction is done
// and Interval has passed since it started: a transaction takes what
// queued meanwhile, so transactions grow with load.
func (a *Aggregator) applyLoop(ctx context.Context, q *queue) {
	if a.cfg.PinAppliers {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	ready := make(chan *batch)
	free := make(chan *batch, 2)
	free <- newBatch()
	free <- newBatch()
	done, gone := make(chan struct{}), make(chan struct{})
	defer func() { close(done); <-gone }()
	go func() { defer close(gone); a.gather(q, ready, free, done) }()
	for {
		var b *batch
		waited := time.Now()
		select {
		case b = <-ready:
		case <-ctx.Done():
			return
		}
		start := time.Now()
		a.cfg.Metrics.IdleSeconds.Add(start.Sub(waited).Seconds())
		a.txStarted(start)
		for attempt := 0; ; attempt++ {
			err := a.apply(context.WithoutCancel(ctx), b)
			if err == nil {
				break
			}
			a.cfg.Metrics.ApplyErrors.Inc()
			a.setError(err)
			a.cfg.Logger.Error("apply batch failed; retrying", "messages", len(b.msgs), "attempt", attempt, "err", err)
			consume.Sleep(ctx, time.Duration(min(attempt+1, 10))*100*time.Millisecond)
			if ctx.Err() != nil {
				a.txEnded(start, false)
				return
			}
		}
		took := a.txEnded(start, true)
		a.cfg.Metrics.ApplySeconds.Observe(took.Seconds())
		a.cfg.Metrics.BatchEvents.Observe(float64(b.n))
		q.done(b.msgs)
		b.reset()
		free <- b
	}
}

// gather fills a batch from q: it waits for one message, then adds what
// else is queued up to MaxBatchEvents events, and offers the batch to
// applyLoop once Interval has passed since it took the previous one (at
// once when full: MaxBatchEvents events or half of QueueBytes). Until
// applyLoop takes it, it goes on adding. Two batches circulate (free), so
// memory holds at most the one being applied and the one being gathered;
// the queue's byte bound covers both, as their messages are released only
// once applied.
func (a *Aggregator) gather(q *queue, ready chan<- *batch, free <-chan *batch, done <-chan struct{}) {
	var taken time.Time // when applyLoop took the previous batch
	for {
		var b *batch
		select {
		case b = <-free:
		case <-done:
			return
		}
		// The first message.
		select {
		case m := <-q.ch:
			meters, v := a.meters.last()
			b.add(m, meters, v, a)
		case <-done:
			return
		}
		if !a.fill(q, b, taken.Add(a.cfg.Interval), ready, done) {
			return
		}
		taken = time.Now()
	}
}

// fill adds to b until applyLoop takes it, which it may from due on;
// false: applyLoop is gone.
func (a *Aggregator) fill(q *queue, b *batch, due time.Time, ready chan<- *batch, done <-chan struct{}) bool {
	var timeout <-chan time.Time
	isDue := a.cfg.Interval <= 0 || !time.Now().Before(due)
	if !isDue {
		t := time.NewTimer(time.Until(due))
		defer t.Stop()
		timeout = t.C
	}
	for {
		// Offered at half the queue's bytes, a batch still takes what
		// arrives until applyLoop takes it, as any batch offered does.
		var offer chan<- *batch
		if isDue || b.n >= a.cfg.MaxBatchEvents || int64(b.size) >= a.cfg.QueueBytes/2 {
			offer = ready
		}
		var in <-chan abacus.LogMessage
		if b.n < a.cfg.MaxBatchEvents {
			in = q.ch
		}
		select {
		case offer <- b:
			return true
		case m := <-in:
			meters, v := a.meters.last()
			b.add(m, meters, v, a)
		case <-timeout:
			isDue, timeout = true, nil
		case <-done:
			return false
		}
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

// done releases the bytes of an applied batch.
func (q *queue) done(batch []abacus.LogMessage) {
	for _, m := range batch {
		q.sem.Release(q.weight(m))
	}
}
