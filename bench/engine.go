package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/jetstream"
)

// EngineReport is the raw event log measured alone: a fresh embedded
// JetStream with the same durability and partitions, fed the log records of
// the same synthetic events (one message per batch of Batch events) from
// the same number of concurrent appenders, then read back in full.
type EngineReport struct {
	Seconds        float64       `json:"append_seconds"`
	Messages       int64         `json:"messages"`
	Events         int64         `json:"events"`
	AppendPerSec   float64       `json:"append_events_per_sec"`
	AppendP50      time.Duration `json:"append_p50_ns"`
	AppendP99      time.Duration `json:"append_p99_ns"`
	ReadSeconds    float64       `json:"read_seconds"`
	ReadPerSec     float64       `json:"read_events_per_sec"`
	EndToEndPerSec float64       `json:"end_to_end_events_per_sec"` // events / (append + read time)
	// ReadRestarts counts partition reads restarted after an error or a
	// stall of readStall: each adds up to that much to ReadSeconds.
	ReadRestarts int64 `json:"read_restarts"`
}

// runEngine measures the raw engine. Each appender writes whole batches to
// partitions in turn: the engine's best case, with no HTTP, no parsing and
// no group commit across requests.
func runEngine(ctx context.Context, cfg Config, gen *generator) (*EngineReport, error) {
	dir, err := os.MkdirTemp("", "abacus-bench-engine-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	log, err := jetstream.Open(ctx, jetstream.Config{Dir: dir, Durability: cfg.Durability, Partitions: cfg.Partitions})
	if err != nil {
		return nil, err
	}
	defer log.Close()

	var (
		mu        sync.Mutex
		latencies []time.Duration
		messages  atomic.Int64
		events    atomic.Int64
		firstErr  error
	)
	start := time.Now()
	deadline := start.Add(cfg.EngineDuration)
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var lat []time.Duration
			var msg []byte
			var n int64
			var st stamp
			for p := w % cfg.Partitions; time.Now().Before(deadline) && ctx.Err() == nil; p = (p + 1) % cfg.Partitions {
				now := time.Now()
				st.set(now)
				msg = abacus.AppendMessage(msg[:0], cfg.Batch)
				for range cfg.Batch {
					s := gen.event(rng, w, n, &st)
					n++
					msg = gen.record(msg, &s, now)
				}
				t0 := time.Now()
				if _, err := log.Append(ctx, p, msg); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("append to partition %d: %w", p, err))
					mu.Unlock()
					return
				}
				lat = append(lat, time.Since(t0))
				messages.Add(1)
				events.Add(int64(cfg.Batch))
			}
			mu.Lock()
			latencies = append(latencies, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	r := &EngineReport{Seconds: time.Since(start).Seconds(), Messages: messages.Load(), Events: events.Load()}
	r.AppendPerSec = float64(r.Events) / r.Seconds
	p := percentiles(latencies, 0.5, 0.99)
	r.AppendP50, r.AppendP99 = p[0], p[1]

	readStart := time.Now()
	read, restarts, err := readAll(ctx, log, cfg.Partitions)
	r.ReadRestarts = restarts
	if err != nil {
		return nil, err
	}
	if read != r.Events {
		return nil, fmt.Errorf("read back %d events, appended %d", read, r.Events)
	}
	r.ReadSeconds = time.Since(readStart).Seconds()
	r.ReadPerSec = float64(read) / r.ReadSeconds
	r.EndToEndPerSec = float64(r.Events) / (r.Seconds + r.ReadSeconds)
	return r, nil
}

var errDone = errors.New("partition read to the end")

// readStall is how long a partition read may go without a message before
// it is restarted.
const readStall = 5 * time.Second

// readAll reads every partition to its last sequence concurrently, decoding
// the events like the aggregator does, and returns the events read.
func readAll(ctx context.Context, log *jetstream.Log, partitions int) (events, restarts int64, err error) {
	var total, stalls atomic.Int64
	errs := make([]error, partitions)
	var wg sync.WaitGroup
	for p := range partitions {
		wg.Go(func() {
			last, err := log.LastSequence(ctx, p)
			if err != nil || last == 0 {
				errs[p] = err
				return
			}
			var evs []abacus.Event
			var after uint64
			// A read can fail, and can also stall with no error (seen with
			// messages of ~270 KB: the ordered consumer's read-ahead
			// overruns the client's pending limit). Resume where it
			// stopped after an error or readStall without a message.
			for attempt := 0; ; attempt++ {
				rctx, cancel := context.WithCancel(ctx)
				watchdog := time.AfterFunc(readStall, cancel)
				err = log.Read(rctx, p, after, func(m abacus.LogMessage) error {
					watchdog.Reset(readStall)
					var err error
					if evs, err = abacus.DecodeMessage(m.Data, evs[:0]); err != nil {
						return fmt.Errorf("partition %d sequence %d: %w", p, m.Sequence, err)
					}
					total.Add(int64(len(evs)))
					after = m.Sequence
					if m.Sequence >= last {
						return errDone
					}
					return nil
				})
				watchdog.Stop()
				cancel()
				if errors.Is(err, errDone) || ctx.Err() != nil {
					break
				}
				stalls.Add(1)
				if attempt == 20 {
					err = fmt.Errorf("partition %d: read stalled or failed 20 times, last at sequence %d of %d: %w", p, after, last, err)
					break
				}
			}
			if !errors.Is(err, errDone) {
				errs[p] = err
			}
		})
	}
	wg.Wait()
	return total.Load(), stalls.Load(), errors.Join(errs...)
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
