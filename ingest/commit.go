package ingest

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/bufpool"
	"github.com/prometheus/client_golang/prometheus"
)

// CommitterConfig configures group commit.
type CommitterConfig struct {
	Log abacus.EventLog
	// MaxEvents and MaxBytes cap one log append (defaults 5,000 events and
	// 1 MiB). A flush happens as soon as the previous append of the
	// partition is acknowledged: requests that arrive while an append is in
	// flight are packed into the next one, so batches grow with load and a
	// lone request waits for no timer.
	MaxEvents int
	MaxBytes  int
	Metrics   *Metrics
}

// Committer packs the events of concurrent requests for the same partition
// into one log append and answers each request once every append holding
// its events is acknowledged.
type Committer struct {
	cfg    CommitterConfig
	queues []chan *pending
	wg     sync.WaitGroup
	stop   chan struct{}
	// mu is held for reading while Commit queues pieces and for writing
	// by Close to set closed: once Close has it, no piece can reach a
	// queue, so the loops, draining theirs, answer every piece queued.
	mu     sync.RWMutex
	closed bool
}

// pending is one request's events for one partition.
type pending struct {
	records []byte
	n       int
	done    chan error
}

// NewCommitter starts one committer goroutine per partition.
func NewCommitter(cfg CommitterConfig) *Committer {
	cfg.MaxEvents = cmp.Or(cfg.MaxEvents, 5000)
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, 1<<20)
	// A message is a count header plus whole records: keep the records
	// below the log's limit with room for the header.
	cfg.MaxBytes = min(cfg.MaxBytes, cfg.Log.MaxMessageBytes()-16)
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	c := &Committer{cfg: cfg, stop: make(chan struct{})}
	for p := 0; p < cfg.Log.Partitions(); p++ {
		q := make(chan *pending, 1024)
		c.queues = append(c.queues, q)
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.loop(p, q) }()
	}
	return c
}

// Commit makes events durable in the log. It returns nil once all of them
// are acknowledged; on error none should be reported as accepted (some may
// be in the log; producers resend, and dedup absorbs the repeat).
func (c *Committer) Commit(ctx context.Context, events []abacus.Event) error {
	// Per partition, the request's records in pieces of at most MaxBytes,
	// so that no log message outgrows the log's message limit.
	// Each piece's buffer is sized for the records still to come in its
	// partition: appending into a growing buffer allocated twice the
	// records and was a tenth of the server's allocation under abacus bench.
	parts := make([][]*pending, len(c.queues))
	defer func() {
		for _, pds := range parts {
			for _, pd := range pds {
				pd.release()
			}
		}
	}()
	partition := make([]int, len(events))
	need := make([]int, len(c.queues))
	for i := range events {
		e := &events[i]
		partition[i] = abacus.Partition(e.TenantID, e.Customer, len(c.queues))
		need[partition[i]] += abacus.RecordSize(e)
	}
	for i := range events {
		e := &events[i]
		p, size := partition[i], abacus.RecordSize(e)
		n := len(parts[p])
		if n == 0 || len(parts[p][n-1].records)+size > c.cfg.MaxBytes {
			parts[p] = append(parts[p], newPending(min(need[p], c.cfg.MaxBytes)))
			n++
		}
		pd := parts[p][n-1]
		pd.records = abacus.AppendRecord(pd.records, e)
		pd.n++
		need[p] -= size
	}
	sent, err := c.queue(ctx, parts)
	if err != nil {
		return errors.Join(err, wait(sent))
	}
	return wait(sent)
}

// queue hands the pieces to their partitions' loops and returns those it
// queued; an error when it could not queue them all.
func (c *Committer) queue(ctx context.Context, parts [][]*pending) ([]*pending, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, errShuttingDown
	}
	var sent []*pending
	for p, pds := range parts {
		for _, pd := range pds {
			select {
			case c.queues[p] <- pd:
				sent = append(sent, pd)
			case <-ctx.Done():
				return sent, abacus.Errorf(abacus.EUNAVAILABLE, "request canceled before its events were appended")
			}
		}
	}
	return sent, nil
}

var errShuttingDown = abacus.Errorf(abacus.EUNAVAILABLE, "shutting down")

// pendingPool recycles pieces: their buffers were a fourteenth of the bytes
// the server allocated under abacus bench. A piece goes back once its
// request has taken its outcome (the committer is done with it: it copied
// the records into its message before answering), or when it was never
// queued.
var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan error, 1)} }}

// maxKeptRecords is the largest piece buffer the pool keeps (bufpool.Keep
// also drops one far larger than the records it held).
const maxKeptRecords = 256 << 10

func newPending(size int) *pending {
	pd := pendingPool.Get().(*pending)
	if cap(pd.records) < size {
		pd.records = make([]byte, 0, size)
	}
	pd.records, pd.n = pd.records[:0], 0
	return pd
}

func (pd *pending) release() {
	if bufpool.Keep(cap(pd.records), len(pd.records), maxKeptRecords, 64<<10) {
		pendingPool.Put(pd)
	}
}

// wait collects the outcome of every submitted piece. Pieces already
// queued are waited for even when the request fails, so that a request
// never returns while the log may still be appending its events.
func wait(sent []*pending) error {
	var firstErr error
	for _, pd := range sent {
		if err := <-pd.done; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (c *Committer) loop(p int, q chan *pending) {
	var group []*pending
	var msg []byte
	var carry *pending // taken from the queue but did not fit the last append
	for {
		group = group[:0]
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-q:
			case <-c.stop:
				// Close let no piece in after stop, so this answers every
				// piece still queued. (The select may also have taken some
				// of them first and appended them, which is as good.)
				for {
					select {
					case pd := <-q:
						pd.done <- errShuttingDown
					default:
						return
					}
				}
			}
		}
		group = append(group, first)
		n, size := first.n, len(first.records)
	gather:
		for n < c.cfg.MaxEvents {
			select {
			case pd := <-q:
				if size+len(pd.records) > c.cfg.MaxBytes {
					carry = pd
					break gather
				}
				group = append(group, pd)
				n += pd.n
				size += len(pd.records)
			default:
				break gather
			}
		}
		msg = abacus.AppendMessage(msg[:0], n)
		for _, pd := range group {
			msg = append(msg, pd.records...)
		}
		start := time.Now()
		// The append is not tied to any one request's context: it carries
		// other requests' events too.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := c.cfg.Log.Append(ctx, p, msg)
		cancel()
		c.cfg.Metrics.AppendSeconds.Observe(time.Since(start).Seconds())
		c.cfg.Metrics.AppendEvents.Observe(float64(n))
		if err != nil {
			c.cfg.Metrics.AppendErrors.Inc()
		}
		for _, pd := range group {
			pd.done <- err
		}
		clear(group) // answered pieces go back to the pool: keep no reference
	}
}

// Close stops the committer goroutines after their appends in flight.
// A Commit whose pieces are still queued then fails with EUNAVAILABLE (or
// succeeds, if its pieces were appended first), and one that starts after
// Close fails at once. Closing again does nothing.
func (c *Committer) Close() {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return
	}
	close(c.stop)
	c.wg.Wait()
}

// Metrics of ingest.
type Metrics struct {
	Received      prometheus.Counter
	Accepted      prometheus.Counter
	Rejected      *prometheus.CounterVec
	AppendSeconds prometheus.Histogram
	AppendEvents  prometheus.Histogram
	AppendErrors  prometheus.Counter
}

// NewMetrics creates ingest metrics registered on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Received:      prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_events_received_total", Help: "Events in ingest requests, valid or not."}),
		Accepted:      prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_events_accepted_total", Help: "Events durably appended to the log and acknowledged (202)."}),
		Rejected:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "abacus_events_rejected_total", Help: "Events rejected at ingest, by field."}, []string{"field"}),
		AppendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "abacus_log_append_seconds", Help: "Latency of one group-commit log append.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		AppendEvents:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "abacus_log_append_events", Help: "Events packed into one log append.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		AppendErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_log_append_errors_total", Help: "Failed log appends."}),
	}
	if reg != nil {
		reg.MustRegister(m.Received, m.Accepted, m.Rejected, m.AppendSeconds, m.AppendEvents, m.AppendErrors)
	}
	return m
}
