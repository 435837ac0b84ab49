package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/abacus-billing/abacus/client"
)

// PhaseReport is one open-loop phase: requests sent on a fixed schedule,
// latency measured from the scheduled send time.
type PhaseReport struct {
	Batch        int     `json:"batch"`
	Concurrency  int     `json:"concurrency"`
	TargetPerSec float64 `json:"target_events_per_sec"` // scheduled
	Seconds      float64 `json:"seconds"`
	Requests     int64   `json:"requests"`
	Failed       int64   `json:"failed_requests"`
	// AcceptedPerSec is events in 202 answers per second of the phase.
	AcceptedPerSec float64 `json:"accepted_per_sec"`
	// DrainSeconds is the time from the last answer until every event of
	// the phase was visible in GET /v1/usage: near 0 when aggregation
	// keeps up.
	DrainSeconds float64 `json:"drain_seconds"`
	Mismatch     string  `json:"mismatch,omitempty"`

	LatencyP50  time.Duration `json:"latency_p50_ns"`
	LatencyP99  time.Duration `json:"latency_p99_ns"`
	LatencyP999 time.Duration `json:"latency_p999_ns"`
	LatencyMax  time.Duration `json:"latency_max_ns"`

	// Freshness is, for probe events sent through the phase (one every
	// 100 ms, each alone in its request), the time from the 202 until
	// GET /v1/usage counts it (polled every 5 ms).
	FreshnessSamples int           `json:"freshness_samples"`
	FreshnessP50     time.Duration `json:"freshness_p50_ns"`
	FreshnessP99     time.Duration `json:"freshness_p99_ns"`
	FreshnessMax     time.Duration `json:"freshness_max_ns"`

	// RSS sampled every 250 ms during the phase (in-process only): at the
	// end of its first tenth, at its end, and the highest. GoEarlyBytes
	// and GoEndBytes are the Go runtime's share at the same two samples
	// (see goMemory): the rest is C memory, SQLite's page caches first.
	// RSSTenths and GoTenths are the same two at the end of each tenth of
	// the phase, to tell growth from a plateau.
	RSSEarlyBytes int64         `json:"rss_early_bytes"`
	RSSEndBytes   int64         `json:"rss_end_bytes"`
	RSSMaxBytes   int64         `json:"rss_max_bytes"`
	GoEarlyBytes  int64         `json:"go_early_bytes"`
	GoEndBytes    int64         `json:"go_end_bytes"`
	RSSTenths     []int64       `json:"rss_tenths_bytes,omitempty"`
	GoTenths      []int64       `json:"go_tenths_bytes,omitempty"`
	CPUPerEvent   time.Duration `json:"cpu_per_event_ns"`
	// Aggregator: first send → all visible, as Report.Aggregator.
	Aggregator *AggregatorLoad `json:"aggregator,omitempty"`
}

// openLoop runs ph open loop with the freshness probe beside it, then waits
// until its events are visible.
func (r *run) openLoop(ctx context.Context, c *client.Client, mem *memSampler, ph phase) (*PhaseReport, error) {
	rep := &PhaseReport{Batch: ph.batch, Concurrency: ph.concurrency, TargetPerSec: ph.rate * float64(ph.batch)}
	if ph.rate <= 0 {
		return nil, fmt.Errorf("%s: no rate to run at", ph.name)
	}
	pctx, stopProbe := context.WithCancel(ctx)
	var fresh []time.Duration
	var probeErr error
	var wg sync.WaitGroup
	wg.Go(func() { fresh, probeErr = r.probe(pctx, c) })
	mark := mem.mark()
	var earlyErr error
	if ph.heapEarly != nil {
		wg.Go(func() {
			select {
			case <-time.After(ph.duration / 10):
				earlyErr = pprof.Lookup("heap").WriteTo(ph.heapEarly, 0)
			case <-pctx.Done():
			}
		})
	}
	cpu0 := cpuTime()
	aggDone := r.aggregatorMark()
	l, err := r.load(ctx, c, ph)
	stopProbe()
	wg.Wait()
	if err == nil && earlyErr != nil {
		err = fmt.Errorf("heap profile: %w", earlyErr)
	}
	if err == nil && ph.heap != nil {
		if err = pprof.Lookup("heap").WriteTo(ph.heap, 0); err != nil {
			err = fmt.Errorf("heap profile: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	if probeErr != nil {
		return nil, fmt.Errorf("%s: freshness probe: %w", ph.name, probeErr)
	}
	r.distinct += l.distinct
	got, visible, err := r.waitCount(ctx, c, r.distinct, l.failed)
	if err != nil {
		return nil, err
	}
	rep.Aggregator = aggDone()
	if l.distinct > 0 && mem != nil {
		rep.CPUPerEvent = (cpuTime() - cpu0) / time.Duration(l.distinct)
	}
	rep.Mismatch = r.mismatch(got, l.failed)
	rep.Seconds = l.last.Sub(l.first).Seconds()
	rep.Requests, rep.Failed = l.requests, l.failed
	rep.AcceptedPerSec = float64(l.accepted) / rep.Seconds
	rep.DrainSeconds = max(visible.Sub(l.last).Seconds(), 0)
	p := percentiles(l.latencies, 0.50, 0.99, 0.999, 1)
	rep.LatencyP50, rep.LatencyP99, rep.LatencyP999, rep.LatencyMax = p[0], p[1], p[2], p[3]
	rep.FreshnessSamples = len(fresh)
	p = percentiles(fresh, 0.50, 0.99, 1)
	rep.FreshnessP50, rep.FreshnessP99, rep.FreshnessMax = p[0], p[1], p[2]
	if tenths := mem.tenths(mark); len(tenths) > 0 {
		for _, t := range tenths {
			rep.RSSTenths = append(rep.RSSTenths, t.rss)
			rep.GoTenths = append(rep.GoTenths, t.goMem)
			rep.RSSMaxBytes = max(rep.RSSMaxBytes, t.peak)
		}
		rep.RSSEarlyBytes, rep.GoEarlyBytes = tenths[0].rss, tenths[0].goMem
		rep.RSSEndBytes, rep.GoEndBytes = tenths[len(tenths)-1].rss, tenths[len(tenths)-1].goMem
	}
	return rep, nil
}

// probe sends one probe event every 100 ms until ctx ends and returns, for
// each, the time from its 202 until the usage API counted it. Probes go to
// 16 customers in turn, so that they pass through every partition.
func (r *run) probe(ctx context.Context, c *client.Client) ([]time.Duration, error) {
	const customers = 16
	var counts [customers]int64
	var out []time.Duration
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return out, nil
		}
		k := n % customers
		cust := customerID(k)
		body := fmt.Sprintf(`{"id":"p%s-%d","type":%q,"customer":%q,"properties":{}}`, r.id, n, r.probeType, cust)
		res, err := c.IngestRaw(ctx, "application/json", []byte(body))
		if ctx.Err() != nil {
			return out, nil
		}
		if err != nil || res.Accepted != 1 {
			return out, fmt.Errorf("probe %d not accepted: %v", n, err)
		}
		acked := time.Now()
		counts[k]++
		q := client.UsageQuery{Meter: r.probeMeter, Customer: cust, From: r.from}
		for {
			res, err := c.Usage(ctx, q)
			if ctx.Err() != nil {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			var got int64
			for _, row := range res.Rows {
				got += row.Count
			}
			if got >= counts[k] {
				out = append(out, time.Since(acked))
				break
			}
			if time.Since(acked) > r.cfg.VisibleTimeout {
				return out, fmt.Errorf("probe %d not visible after %s", n, r.cfg.VisibleTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// QueryReport is the query phase.
type QueryReport struct {
	Events       int64         `json:"events"` // distinct events loaded by the phase
	Days         int           `json:"days"`
	LoadSeconds  float64       `json:"load_seconds"`   // first send → all visible
	LoadPerSec   float64       `json:"load_per_sec"`   // Events / LoadSeconds
	StoredEvents int64         `json:"stored_events"`  // distinct events of the whole run when queried
	Queries      int           `json:"queries"`        // each: one customer, the sum meter, Days, hourly windows
	RowsPerQuery float64       `json:"rows_per_query"` // mean windows answered
	LatencyP50   time.Duration `json:"latency_p50_ns"`
	LatencyP99   time.Duration `json:"latency_p99_ns"`
	LatencyMax   time.Duration `json:"latency_max_ns"`
	Mismatch     string        `json:"mismatch,omitempty"`
}

// queryPhase loads QueryEvents events spread over QueryDays, waits until
// they are visible, then times usage queries one at a time.
func (r *run) queryPhase(ctx context.Context, c *client.Client) (*QueryReport, error) {
	cfg := r.cfg
	rep := &QueryReport{Days: cfg.QueryDays, Queries: cfg.Queries}
	gen := *r.gen
	gen.spread = time.Duration(cfg.QueryDays)*24*time.Hour - 2*time.Hour
	start := time.Now()
	l, err := r.load(ctx, c, phase{name: "query-load", batch: 1000, concurrency: 8, duration: 24 * time.Hour,
		events: cfg.QueryEvents, gen: &gen, worker: 3000})
	if err != nil {
		return nil, err
	}
	r.distinct += l.distinct
	got, visible, err := r.waitCount(ctx, c, r.distinct, l.failed)
	if err != nil {
		return nil, err
	}
	rep.Events, rep.StoredEvents = l.distinct, r.distinct
	rep.LoadSeconds = visible.Sub(start).Seconds()
	rep.LoadPerSec = float64(l.distinct) / rep.LoadSeconds
	if rep.Mismatch = r.mismatch(got, l.failed); rep.Mismatch != "" {
		return rep, nil
	}
	meter := r.meterKeys[0]
	if len(r.meterKeys) > 1 {
		meter = r.meterKeys[1] // the sum, grouped by model and region
	}
	to := time.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	from := to.Add(-time.Duration(cfg.QueryDays) * 24 * time.Hour)
	rng := rand.New(rand.NewPCG(3, 4))
	lat := make([]time.Duration, 0, cfg.Queries)
	var rows int
	for range cfg.Queries {
		q := client.UsageQuery{Meter: meter, Customer: customerID(rng.IntN(cfg.Customers)), From: from, To: to, Window: "hour", TimeZone: "UTC"}
		t0 := time.Now()
		res, err := c.Usage(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("usage query: %w", err)
		}
		lat = append(lat, time.Since(t0))
		rows += len(res.Rows)
	}
	rep.RowsPerQuery = float64(rows) / float64(cfg.Queries)
	p := percentiles(lat, 0.5, 0.99, 1)
	rep.LatencyP50, rep.LatencyP99, rep.LatencyMax = p[0], p[1], p[2]
	return rep, nil
}

// memSampler samples this process's resident set (VmRSS) and the Go
// runtime's share of it every 250 ms.
type memSampler struct {
	mu      sync.Mutex
	samples []memSample
	done    chan struct{}
	wg      sync.WaitGroup
}

func startMemSampler() *memSampler {
	m := &memSampler{done: make(chan struct{})}
	goMetrics := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	m.wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := currentRSS(); err == nil {
				s := memSample{rss: v, goMem: goMemory(goMetrics)}
				m.mu.Lock()
				m.samples = append(m.samples, s)
				m.mu.Unlock()
			}
			select {
			case <-t.C:
			case <-m.done:
				return
			}
		}
	})
	return m
}

func (m *memSampler) stop() {
	close(m.done)
	m.wg.Wait()
}

// mark returns a position to pass to tenths (nil-safe).
func (m *memSampler) mark() int {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.samples)
}

// memSample is one reading of memSampler; peak, set only by tenths, is
// the highest RSS of the samples a tenth stands for.
type memSample struct {
	rss, goMem, peak int64
}

// goMemory is the memory the Go runtime holds from the OS: everything it
// mapped (heap, stacks, its own structures) less the heap it released.
// Mapped is not always resident, so this slightly overstates Go's share
// of RSS; RSS less it is, near enough, what C code holds (SQLite).
func goMemory(s []metrics.Sample) int64 {
	metrics.Read(s)
	return int64(s[0].Value.Uint64()) - int64(s[1].Value.Uint64())
}

// tenths returns, for each tenth of the samples after mark, its last
// sample and its highest RSS (fewer than ten with fewer samples).
func (m *memSampler) tenths(mark int) []memSample {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.samples[min(mark, len(m.samples)):]
	var out []memSample
	from := 0
	for i := 1; i <= 10; i++ {
		to := i * len(s) / 10
		if to == from {
			continue
		}
		t := s[to-1]
		for _, v := range s[from:to] {
			t.peak = max(t.peak, v.rss)
		}
		out = append(out, t)
		from = to
	}
	return out
}

// currentRSS reads VmRSS of this process.
func currentRSS() (int64, error) { return procStatus("VmRSS:") }

// peakRSS reads VmHWM (peak resident set) of this process.
func peakRSS() (int64, error) { return procStatus("VmHWM:") }

func procStatus(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
